"""What every REST profile shares: the context its routes are built in, and the error response."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from ..dataplane import OFF_LOOP_DECODE_BYTES, DataPlane, failure_status
from ..errors import ServingError
from ..http import Deferred, Request, Response
from ..repository.model import DeployedModel
from ..scheduler.batching import batch_key
from ..scheduler.runner import Split
from ..types import InferRequest

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


class DeferredInfer:
    """The hot path of a tensor protocol, on callbacks rather than a coroutine per request: decode
    (on a codec thread when the body is large), queue for the model, and answer through a Deferred
    with what the scheduler's split made where the model ran.

    ``decode(request, model)`` gives the InferRequest and a key of the reply's form;
    ``split_for(model, key)`` the scheduler's split for it; ``answer(reply, result)`` resolves the
    Deferred with a split's result or an error; ``fail(error)`` is the profile's error response."""

    def __init__(self, plane: DataPlane, decode: Callable[[Request, DeployedModel], tuple[InferRequest, Any]],
                 split_for: Callable[[DeployedModel, Any], Split], answer: Callable[[Deferred, Any], None],
                 fail: Callable[[BaseException], Response] = failure):
        self.plane = plane
        self.decode = decode
        self.split_for = split_for
        self.answer = answer
        self.fail = fail

    def __call__(self, request: Request, model: DeployedModel) -> Response | Deferred:
        request.model = model
        reply = Deferred()
        if len(request.body) > OFF_LOOP_DECODE_BYTES:
            self.plane.off_loop(lambda: self._prepared(request, model),
                                lambda prepared: self._queue(reply, model, prepared),
                                lambda err: reply.resolve(self.fail(err)))
            return reply
        try:
            prepared = self._prepared(request, model)
        except ServingError as err:
            return self.fail(err)
        self._queue(reply, model, prepared)
        return reply

    def _prepared(self, request: Request, model: DeployedModel) -> tuple[InferRequest, Any]:
        """Decoded, with its deadline and its batch key: all the work a body's size scales, done
        where the body is decoded (a codec thread for a large one), never in the scheduler's launch."""
        infer_request, key = self.decode(request, model)
        infer_request.trace = request.trace
        batch_key(self.plane.prepare(infer_request, request.headers))
        return infer_request, key

    def _queue(self, reply: Deferred, model: DeployedModel, prepared: tuple) -> None:
        if reply.cancelled:  # the client left while its body was decoded
            return
        infer_request, key = prepared
        try:
            ticket = self.plane.submit(model, infer_request, partial(self.answer, reply), self.split_for(model, key))
        except ServingError as err:
            reply.resolve(self.fail(err))
            return
        reply.on_cancel = ticket.cancel


def is_json(content_type: str) -> bool:
    return content_type in ("", "application/json") or content_type.endswith("+json")
