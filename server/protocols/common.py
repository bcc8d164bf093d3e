"""What every REST profile shares: the context its routes are built in, and the error response."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..dataplane import DataPlane, failure_status
from ..errors import ServingError
from ..http import Response

log = logging.getLogger("hyperserve.protocols")


@dataclass
class Settings:
    """What the platform configures about the routes (Vertex AI's AIP_* variables)."""

    health_route: str = "/health"
    predict_route: str = "/predict"
    deployed_model_id: str = ""


@dataclass
class Context:
    """Where a profile builds its routes: the data plane, the settings, and endpoints built once
    and shared by profiles that answer a path identically (TorchServe's and SageMaker's /ping)."""

    plane: DataPlane
    settings: Settings = field(default_factory=Settings)
    _shared: dict[Callable, Any] = field(default_factory=dict)

    def shared(self, factory: Callable[[Context], Any]) -> Any:
        made = self._shared.get(factory)
        if made is None:
            made = self._shared[factory] = factory(self)
        return made


def failure(err: BaseException) -> Response:
    """An exception that ends a request → the JSON error response ({"error": ...})."""
    if not isinstance(err, ServingError):
        log.error("unhandled error while answering a request", exc_info=err)
    status, message, headers = failure_status(err)
    return Response.error(status, message, headers or None)


def is_json(content_type: str) -> bool:
    return content_type in ("", "application/json") or content_type.endswith("+json")
