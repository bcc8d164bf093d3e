"""Custom Prediction Routines (Vertex AI's CPR SDK): a user's ``Predictor`` (and optionally a custom
``Handler``) runs unmodified (../shared/CONTRACTS.md §1).

The predictor: ``load(artifacts_uri)`` with the local artifacts directory (gs:// is downloaded
first), then per request ``postprocess(predict(preprocess(request_dict)))`` — CPR's order and
types, but on a model thread, not the event loop, so health stays responsive. A predictor is
called from one thread at a time (CPR predictors are not written to be thread-safe); use
``--workers`` for parallelism. A custom CPR ``Handler`` (``HANDLER_MODULE``/``HANDLER_CLASS``
other than Google's PredictionHandler) gets a Starlette request, as under Google's server, and
its coroutine runs on the model thread's own event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hyperserve.server.errors import ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import Capabilities, Handler, HandlerConfig, Inputs, RawBodies

log = logging.getLogger("hyperserve.handlers.cpr")

REQUEST = "request"
RESPONSE = "response"
INSTANCES = "instances"  # Google's stock predictors: requests' instances, batched
PREDICTIONS = "predictions"
# Google's own predictors whose preprocess and postprocess work row by row, so concurrent
# requests can share one predict() call (a subclass may change that: it is run request by request).
ROW_WISE_PREDICTORS = {"google.cloud.aiplatform.prediction.sklearn.predictor.SklearnPredictor",
                       "google.cloud.aiplatform.prediction.xgboost.predictor.XgboostPredictor"}
GOOGLE_DEFAULT_HANDLER = "google.cloud.aiplatform.prediction.handler:PredictionHandler"


def import_object(target: str, what: str):
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ServingError(f"{what} must be given as module:Class, got {target!r}")
    if os.getcwd() not in sys.path:  # CPR images run user code from the working directory
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ServingError(f"cannot load the {what} {target}: {type(err).__name__}: {err}") from err


def from_environment(environ=os.environ) -> tuple[str, str]:
    """(predictor, handler) as module:Class from the variables Google's CPR image sets."""
    predictor = handler = ""
    if environ.get("PREDICTOR_MODULE") and environ.get("PREDICTOR_CLASS"):
        predictor = f"{environ['PREDICTOR_MODULE']}:{environ['PREDICTOR_CLASS']}"
    if environ.get("HANDLER_MODULE") and environ.get("HANDLER_CLASS"):
        handler = f"{environ['HANDLER_MODULE']}:{environ['HANDLER_CLASS']}"
    return predictor, handler


class PredictionFailed(ServingError):
    """The predictor raised: 500 with CPR's message."""

    status = 500


class CprHandler(Handler):
    name = "cpr"
    # One call at a time: CPR predictors are not written to be thread-safe. preprocess() takes the
    # whole request dict, so requests cannot be merged, except for Google's stock predictors
    # (row_wise, set per instance at load).
    capabilities = Capabilities(thread_safe=False, releases_gil=False, batchable=False, inputs=Inputs.REQUEST)
    row_wise = False

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        return None  # never detected: chosen with --predictor or PREDICTOR_MODULE/PREDICTOR_CLASS

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        predictor_target = config.options.get("predictor", "")
        handler_target = config.options.get("cpr_handler", "")
        artifacts_uri = str(artifact if artifact.is_dir() else artifact.parent)
        predictor_class = import_object(predictor_target, "predictor") if predictor_target else None
        self.custom = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if handler_target and handler_target != GOOGLE_DEFAULT_HANDLER:
            handler_class = import_object(handler_target, "CPR handler")
            self.custom = handler_class(artifacts_uri, predictor=predictor_class)
            # It reads the request itself: the body reaches predict() raw, with its headers.
            self.capabilities = dataclasses.replace(self.capabilities, raw_bodies=RawBodies.ONE)
            self.description = {"cpr_handler": handler_target, "predictor": predictor_target or None}
            return
        if predictor_class is None:
            raise ServingError("a CPR model needs a predictor: --predictor module:Class, or "
                               "PREDICTOR_MODULE and PREDICTOR_CLASS")
        self.predictor = predictor_class()
        try:
            self.predictor.load(artifacts_uri)
        except Exception as err:
            raise ServingError(f"the predictor's load({artifacts_uri!r}) failed: {type(err).__name__}: {err}") \
                from err
        cls = type(self.predictor)
        self.row_wise = f"{cls.__module__}.{cls.__qualname__}" in ROW_WISE_PREDICTORS
        self.capabilities = dataclasses.replace(self.capabilities, batchable=self.row_wise)
        self.description = {"predictor": predictor_target, "artifacts": artifacts_uri, "batched": self.row_wise}

    def signature(self) -> Signature:
        return Signature((TensorSpec(REQUEST),), (TensorSpec(RESPONSE),))

    def describe(self) -> dict[str, Any]:
        return self.description

    def predict(self, request: InferRequest) -> InferResponse:
        if self.custom is not None:
            return InferResponse({RESPONSE: [self._custom_handle(request)]})
        predictor = self.predictor
        batched = INSTANCES in request.inputs
        body = {INSTANCES: request.inputs[INSTANCES]} if batched else request.inputs[REQUEST][0]
        try:
            result = predictor.postprocess(predictor.predict(predictor.preprocess(body)))
        except ServingError:
            raise
        except Exception as err:
            if type(err).__name__ == "HTTPException" and hasattr(err, "status_code"):  # raised on purpose
                raise ServingError(str(err.detail), status=err.status_code) from None
            raise PredictionFailed(f"The following exception has occurred: {type(err).__name__}. "
                                   f"Arguments: {err.args}.") from None
        if batched:  # split back per request by the runner
            return InferResponse({PREDICTIONS: result[PREDICTIONS]})
        return InferResponse({RESPONSE: [result]})

    def _custom_handle(self, request: InferRequest) -> "RawReply":
        """A custom CPR Handler gets a Starlette Request and returns a Starlette Response."""
        from starlette.requests import Request

        raw = request.raw
        body = bytes(raw.data) if raw is not None else b""
        scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": os.environ.get("AIP_PREDICT_ROUTE", "/predict"), "raw_path": b"", "query_string": b"",
                 "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
                 "client": None, "server": None}

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        if self._loop is None:  # one loop for the handler's coroutines, on its one model thread
            self._loop = asyncio.new_event_loop()
        try:
            response = self._loop.run_until_complete(self.custom.handle(Request(scope, receive)))
        except Exception as err:
            if type(err).__name__ == "HTTPException" and hasattr(err, "status_code"):
                raise ServingError(str(err.detail), status=err.status_code) from None
            raise PredictionFailed(f"An exception {type(err).__name__} occurred. Arguments: {err.args}.") from None
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return RawReply(response.status_code, bytes(response.body), response.headers.get("content-type", ""), headers)


class RawReply:
    """A custom handler's response, sent as it is."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: str, headers: dict[str, str]):
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers
