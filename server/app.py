"""Routes: which path answers what, for every platform profile at once, over one model repository.

| profile   | readiness                         | predict (JSON, or raw by Content-Type)       |
|-----------|-----------------------------------|----------------------------------------------|
| Vertex AI | GET $AIP_HEALTH_ROUTE (/health)   | POST $AIP_PREDICT_ROUTE (/predict)            |
| KServe v1 | GET /v1/models/{m}                | POST /v1/models/{m}:predict                   |
| SageMaker | GET /ping                         | POST /invocations                             |
| TorchServe| GET /ping                         | POST /predictions/{m}[/{v}] (body → one row)  |
| liveness  | GET /live (200 while the process runs)                                            |
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Awaitable, Callable

import orjson

from hyperserve.handlers.cpr import INSTANCES as CPR_INSTANCES
from hyperserve.handlers.cpr import PREDICTIONS as CPR_PREDICTIONS
from hyperserve.handlers.cpr import REQUEST as CPR_REQUEST
from hyperserve.handlers.cpr import RESPONSE as CPR_RESPONSE
from hyperserve.handlers.cpr import RawReply
from hyperserve.handlers.torchserve.handler import PREDICTIONS, ROWS

from .codecs import raw as raw_codec
from .codecs import tf_examples
from .codecs import torchserve as torchserve_codec
from .codecs import vertex_json
from .errors import InvalidInput, ServingError, UnsupportedMediaType
from .http import Deferred, Request, Response
from .repository.model import DeployedModel
from .repository.models import ModelRepository
from .scheduler.runner import Split
from .types import RAW_BODIES, InferRequest, InferResponse, RawBody

log = logging.getLogger("hyperserve.app")

# JSON bodies larger than this are decoded on a codec thread, not on the event loop. (Replies are
# encoded by the scheduler's split, on the model thread, or on the loop only for calls under 1 ms.)
OFF_LOOP_DECODE_BYTES = 256 * 1024

_ALIVE = b'{"status":"alive"}'
_READY = b'{"status":"ready"}'
_HEALTHY = b'{"status":"Healthy"}'
# hyperserve's lifecycle states as TF Serving's model_version_status (state, error_code).
_TF_SERVING_STATES = {"starting": ("START", "OK"), "loading": ("LOADING", "OK"), "ready": ("AVAILABLE", "OK"),
                      "failed": ("END", "UNKNOWN"), "draining": ("UNLOADING", "OK")}
_TORCHSERVE_ERROR_TYPES = {400: "BadRequestException", 404: "ModelNotFoundException", 405: "MethodNotAllowedException",
                           413: "RequestEntityTooLargeException", 503: "ServiceUnavailableException",
                           504: "RequestTimeoutException", 507: "InsufficientStorageException"}


def _torchserve_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """TorchServe's error body: {"code", "type", "message"}."""
    kind = _TORCHSERVE_ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "BadRequestException")
    return Response.json({"code": status, "type": kind, "message": message}, status=status, headers=headers)


def _cpr_request(body: bytes | memoryview, row_wise: bool) -> InferRequest:
    """A CPR predictor takes the whole request dict; Google's row-wise predictors take the
    instances, so that concurrent requests can share a call."""
    doc = vertex_json.parse_json(body)
    instances = doc.get("instances") if type(doc) is dict else None
    if row_wise and type(instances) is list and instances:
        return InferRequest(inputs={CPR_INSTANCES: instances}, batch_size=len(instances))
    return InferRequest(inputs={CPR_REQUEST: [doc]}, batch_size=1)


def _cpr_response(result: Any) -> Response:
    if isinstance(result, RawReply):
        return Response(result.status, result.body, result.content_type, result.headers or None)
    try:
        return Response(200, vertex_json.dumps_tf(result, {"": result}))
    except TypeError as err:
        raise InvalidInput(f"JSON serialization failed for the prediction result: {err}") from None


def _failure(err: BaseException) -> Response:
    """An exception that ends a request → its response: a ServingError says what it is; anything
    else is a bug, logged, and a 500 that names only its type."""
    if isinstance(err, ServingError):
        return Response.error(err.status, err.message, err.headers or None)
    log.error("unhandled error while answering a request", exc_info=err)
    return Response.error(500, f"internal server error: {type(err).__name__}")


def _predictions_split(fmt: str, extra: dict[str, Any] | None) -> Split:
    """The scheduler's split for Vertex/KServe JSON replies: every request's body from the batch's
    response, in one call where the model ran."""
    def split(response: InferResponse, requests: list[InferRequest]) -> list[bytes]:
        return vertex_json.encode_predict_responses(response, [r.batch_size for r in requests], fmt, extra)
    return split


def _answer(reply: Deferred, result: bytes | BaseException) -> None:
    reply.resolve(Response(200, result) if type(result) is bytes else _failure(result))


def _rows_request(body: bytes | memoryview) -> tuple[InferRequest, str]:
    rows, parameters = torchserve_codec.instance_rows(body)
    return InferRequest(inputs={ROWS: rows}, batch_size=len(rows), parameters=parameters), vertex_json.ROW

Endpoint = Callable[[Request], "Response | Awaitable[Response]"]


TIMEOUT_HEADER = "x-request-timeout"


def request_timeout(headers: dict[str, str], parameters: dict[str, Any], default: float) -> float:
    """Seconds this request may take: the ``timeout`` parameter or the X-Request-Timeout header
    (seconds), never longer than the server's limit when it has one."""
    # The parameter is the server's, not the model's: it is taken out so it does not split batches.
    value = parameters.pop("timeout", None)
    if value is None:
        value = headers.get(TIMEOUT_HEADER)
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"timeout must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise InvalidInput(f"timeout must be positive, got {value!r}")
    return min(seconds, default) if default > 0 else seconds


def is_json(content_type: str) -> bool:
    return content_type in ("", "application/json") or content_type.endswith("+json")


class App:
    def __init__(self, models: ModelRepository, *, health_route: str = "/health",
                 predict_route: str = "/predict", deployed_model_id: str = "", request_timeout: float = 0.0):
        self.models = models
        self.deployed_model_id = deployed_model_id
        self.request_timeout = request_timeout
        self.draining = False
        self.cluster_ready: Callable[[], bool] | None = None  # with worker processes: are all ready?
        self._codec_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="codec")
        self._vertex_extra = {"deployedModelId": deployed_model_id} if deployed_model_id else None
        # (format, reply extras) → the split that encodes replies: one object for each kind of
        # request, since the scheduler makes a batch's replies in one call when they share it
        self._splits = {(fmt, id(extra)): _predictions_split(fmt, extra)
                        for fmt in (vertex_json.ROW, vertex_json.COLUMNAR) for extra in (None, self._vertex_extra)}
        self.routes: dict[str, dict[str, Endpoint]] = {}
        self._add("/live", "GET", self.live)
        self._add("/ping", "GET", self.ping)
        self._add("/invocations", "POST", self.predict_default)
        self._add(health_route, "GET", self.health)
        self._add(predict_route, "POST", self.predict_vertex)

    def _add(self, path: str, method: str, endpoint: Endpoint):
        self.routes.setdefault(path, {})[method] = endpoint

    # -- dispatch ---------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        methods = self.routes.get(request.path)
        if methods is None:
            if request.path.startswith("/v1/models/"):
                return self._kserve_v1(request)
            if request.path.startswith("/predictions/"):
                return self._torchserve(request)
            return Response.error(404, f"no route for {request.path}")
        endpoint = methods.get(request.method)
        if endpoint is None and request.method == "HEAD":
            endpoint = methods.get("GET")
        if endpoint is None:
            allow = ", ".join(sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())))
            return Response.error(405, f"method {request.method} is not allowed on {request.path} (allowed: {allow})",
                                  headers={"allow": allow})
        return endpoint(request)

    def _kserve_v1(self, request: Request) -> Response | Awaitable[Response]:
        """/v1/models/{m}[/versions/{v}] then nothing (status), :predict, /metadata or /stats."""
        rest = request.path[len("/v1/models/"):]
        for suffix, method, endpoint in _MODEL_ROUTES:
            if rest.endswith(suffix):
                rest = rest[: len(rest) - len(suffix)] if suffix else rest
                break
        name, _, version = rest.partition("/versions/")
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return Response.error(405, f"method {request.method} is not allowed on {request.path} (allowed: {method})",
                                  headers={"allow": method})
        try:
            model = self.models.get(name, version or None)
        except ServingError as err:
            return Response.error(err.status, err.message)
        return endpoint(self, request, model)

    # -- health ----------------------------------------------------------------------------

    def live(self, request: Request) -> Response:
        return Response(200, _ALIVE)

    def health(self, request: Request) -> Response:
        if self.draining:
            return Response.error(503, "not ready: the server is shutting down")
        for model in self.models:
            if not model.ready:
                return Response.error(503, f"not ready: model '{model.name}' is {model.lifecycle.reason}")
        if self.cluster_ready is not None and not self.cluster_ready():
            return Response.error(503, "not ready: waiting for the other worker processes to load")
        return Response(200, _READY)

    def _model_status(self, request: Request, model: DeployedModel) -> Response:
        """KServe v1's {"name", "ready"} and TF Serving's model_version_status in one body."""
        state = model.lifecycle.state.value
        tf_state, code = _TF_SERVING_STATES.get(state, ("UNKNOWN", "UNKNOWN"))
        body = {"name": model.name, "version": model.version, "ready": model.ready and not self.draining,
                "model_version_status": [{"version": model.version, "state": tf_state, "status": {
                    "error_code": code, "error_message": "" if code == "OK" else model.lifecycle.reason}}]}
        if body["ready"]:
            return Response.json(body)
        return Response.json({**body, "error": model.lifecycle.reason}, status=503)

    def _model_metadata(self, request: Request, model: DeployedModel) -> Response:
        if model.signature is None:
            return Response.error(503, f"model '{model.name}' is not loaded yet ({model.lifecycle.reason})")
        body = {"name": model.name, "version": model.version, "framework": model.framework,
                "signature": model.signature.describe()}
        signature_defs = getattr(model.handler, "signature_defs", None)
        if signature_defs is not None:  # TF Serving's metadata for SavedModels
            body["model_spec"] = {"name": model.name, "signature_name": "", "version": model.version}
            body["metadata"] = {"signature_def": {"signature_def": signature_defs()}}
        return Response(200, vertex_json.dumps(body))

    def _model_stats(self, request: Request, model: DeployedModel) -> Response:
        runner = model.runner
        if runner is None:
            return Response.json({"name": model.name, "state": model.lifecycle.state.value})
        return Response.json({
            "name": model.name, "state": model.lifecycle.state.value, "worker_pid": os.getpid(),
            "queued": len(runner.queue),
            "calls_in_flight": runner.busy, "batch_sizes": {str(k): v for k, v in sorted(runner.batch_sizes.items())},
        })

    # -- predict ---------------------------------------------------------------------------

    def predict_vertex(self, request: Request) -> Response | Deferred | Awaitable[Response]:
        return self._predict(request, self.models.default_model, self._vertex_extra)

    def predict_default(self, request: Request) -> Response | Deferred | Awaitable[Response]:
        return self._predict(request, self.models.default_model, None)

    def _predict_named(self, request: Request, model: DeployedModel) -> Response | Deferred | Awaitable[Response]:
        return self._predict(request, model, None)

    def _predict(self, request: Request, model: DeployedModel,
                 extra: dict[str, Any] | None) -> Response | Deferred | Awaitable[Response]:
        if self.draining or not model.lifecycle.ready:
            try:
                self._check_ready(model)
            except ServingError as err:
                return _failure(err)
        handler = model.handler
        if handler.takes_request or handler.takes_rows:
            return self._predict_objects(request, model, extra)
        return self._predict_tensors(request, model, extra)

    # Tensor handlers (the hot path) run on callbacks, not a coroutine per request: decode (on a
    # codec thread when large), queue for the model; the scheduler's split encodes the replies.

    def _predict_tensors(self, request: Request, model: DeployedModel, extra: dict[str, Any] | None) -> Response | Deferred:
        reply = Deferred()
        if len(request.body) > OFF_LOOP_DECODE_BYTES:
            self._off_loop(reply, lambda: self._decode_tensors(request, model),
                           lambda decoded: self._queue_tensors(reply, request, model, decoded, extra))
            return reply
        try:
            decoded = self._decode_tensors(request, model)
        except ServingError as err:
            return _failure(err)
        self._queue_tensors(reply, request, model, decoded, extra)
        return reply

    def _decode_tensors(self, request: Request, model: DeployedModel) -> tuple[InferRequest, str]:
        """The body → an InferRequest typed by the model's signature, by Content-Type."""
        content_type = request.content_type
        if is_json(content_type):
            # A signature_name picks the signature (its inputs and dtypes); an unknown one is a 400.
            return vertex_json.decode_predict_request(request.body, model.signature, model.handler.signature_named)
        infer_request = raw_codec.decode_raw_request(content_type, request.body, model.signature)
        if infer_request.raw is not None:
            if not model.handler.accepts_raw:
                raise UnsupportedMediaType(
                    f"model '{model.name}' ({model.framework}) does not take {content_type or 'untyped'} bodies; "
                    "send application/json, application/x-npy or application/octet-stream")
            if model.handler.batches_raw:  # one row per body, so that concurrent bodies share a call
                infer_request = InferRequest(inputs={RAW_BODIES: [infer_request.raw]}, batch_size=1)
        return infer_request, vertex_json.ROW

    def _queue_tensors(self, reply: Deferred, request: Request, model: DeployedModel,
                       decoded: tuple[InferRequest, str], extra: dict[str, Any] | None) -> None:
        if reply.cancelled:  # the client left while its body was decoded
            return
        infer_request, fmt = decoded
        try:
            split = self._splits.get((fmt, id(extra))) or _predictions_split(fmt, extra)
            ticket = model.runner.submit(self._with_deadline(request, infer_request), partial(_answer, reply), split)
        except ServingError as err:
            reply.resolve(_failure(err))
            return
        reply.on_cancel = ticket.cancel

    def _off_loop(self, reply: Deferred, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """``work()`` on a codec thread, then ``then(result)`` on the loop; a failure answers ``reply``."""
        loop = asyncio.get_running_loop()

        def back_on_loop(job):
            try:
                result = job.result()
            except BaseException as err:  # noqa: BLE001 - answered as a response, never lost
                reply.resolve(_failure(err))
                return
            then(result)

        self._codec_pool.submit(work).add_done_callback(
            lambda job: loop.call_soon_threadsafe(back_on_loop, job))

    def _with_deadline(self, request: Request, infer_request: InferRequest) -> InferRequest:
        """The request's headers and deadline (--request-timeout, or its own timeout) on ``infer_request``."""
        headers = infer_request.headers = request.headers
        if infer_request.parameters or TIMEOUT_HEADER in headers:
            timeout = request_timeout(headers, infer_request.parameters, self.request_timeout)
        else:
            timeout = self.request_timeout
        if timeout > 0:
            infer_request.deadline = time.monotonic() + timeout
        return infer_request

    async def _predict_objects(self, request: Request, model: DeployedModel, extra: dict[str, Any] | None) -> Response:
        """Handlers that take Python objects: CPR predictors (the whole request) and TorchServe
        handlers (rows)."""
        try:
            if model.handler.takes_request:
                infer_request = await self._cpr_decode(request, model)
                response = await self._infer(request, model, infer_request)
                if CPR_RESPONSE in response.outputs:
                    return _cpr_response(response.outputs[CPR_RESPONSE][0])
                return _cpr_response({CPR_PREDICTIONS: response.outputs[CPR_PREDICTIONS]})
            if is_json(request.content_type):
                infer_request, _ = await self._run_codec(_rows_request, request.body)
            else:
                infer_request, _ = self._decode_tensors(request, model)
            response = await self._infer(request, model, infer_request)
            status = next((s for s in response.metadata.get("status", ()) if s != 200), 200)
            return Response(status, torchserve_codec.predictions_body(response.outputs[PREDICTIONS], extra))
        except ServingError as err:
            return _failure(err)

    def _check_ready(self, model: DeployedModel) -> None:
        if self.draining:
            raise ServingError("the server is shutting down", status=503)
        if not model.ready:
            raise model.not_ready_error()

    async def _cpr_decode(self, request: Request, model: DeployedModel) -> InferRequest:
        if model.handler.custom is not None:  # a custom CPR handler reads the request itself
            return InferRequest(inputs={CPR_REQUEST: [None]}, batch_size=1,
                                raw=RawBody(request.headers.get("content-type", ""), request.body))
        if request.content_type != "application/json":  # as Google's DefaultSerializer
            raise InvalidInput(f"Unsupported content type of the request: {request.content_type or None}. "
                               "Currently supported content-type in DefaultSerializer: \"application/json\".")
        return await self._run_codec(_cpr_request, request.body, model.handler.row_wise)

    async def _run_codec(self, decode, body, *args):
        if len(body) > OFF_LOOP_DECODE_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self._codec_pool, decode, body, *args)
        return decode(body, *args)

    async def _infer(self, request: Request, model: DeployedModel, infer_request: InferRequest) -> InferResponse:
        return await model.runner.infer(self._with_deadline(request, infer_request))

    # -- TF Serving's :classify and :regress ---------------------------------------------------

    def _classify(self, request: Request, model: DeployedModel) -> Awaitable[Response]:
        return self._examples(request, model, tf_examples.CLASSIFY)

    def _regress(self, request: Request, model: DeployedModel) -> Awaitable[Response]:
        return self._examples(request, model, tf_examples.REGRESS)

    async def _examples(self, request: Request, model: DeployedModel, method: str) -> Response:
        """tf.Example inputs to a signature whose method_name is classify or regress."""
        kind = "classification" if method == tf_examples.CLASSIFY else "regression"
        try:
            self._check_ready(model)
            if not hasattr(model.handler, "signature_method"):
                raise InvalidInput(f"model '{model.name}' ({model.framework}) has no {kind} signature: "
                                   ":classify and :regress are for TensorFlow SavedModels")
            examples, name = await self._run_codec(tf_examples.decode_examples, request.body)
            name = name or model.handler.default
            actual = model.handler.signature_method(name)  # an unknown name is a 400
            if actual != method:
                raise InvalidInput(f"Expected {kind} signature method_name to be {method}. Was: {actual}")
            signature = model.handler.signature_named(name)
            infer_request = InferRequest(inputs={signature.inputs[0].name: examples}, batch_size=len(examples),
                                         signature_name=name)
            response = await self._infer(request, model, infer_request)
            result = (tf_examples.classify_result if method == tf_examples.CLASSIFY
                      else tf_examples.regress_result)(response.outputs, len(examples))
            return Response(200, vertex_json.dumps(result))
        except ServingError as err:
            return _failure(err)

    # -- TorchServe's inference API ----------------------------------------------------------

    def ping(self, request: Request) -> Response:
        """TorchServe's /ping (also SageMaker's): 200 Healthy only when every model is ready."""
        ready = self.health(request)
        if ready.status == 200:
            return Response(200, _HEALTHY)
        return Response.json({"status": "Unhealthy", "error": orjson.loads(ready.body)["error"]}, status=ready.status)

    def _torchserve(self, request: Request) -> Response | Awaitable[Response]:
        """POST|PUT /predictions/{model}[/{version}]: the body (or each form field) is one row."""
        name, _, version = request.path[len("/predictions/"):].partition("/")
        if request.method not in ("POST", "PUT"):
            return _torchserve_error(405, f"method {request.method} is not allowed on {request.path} "
                                          "(allowed: POST, PUT)", {"allow": "POST, PUT"})
        try:
            model = self.models.get(name, version or None)
        except ServingError as err:
            return _torchserve_error(err.status, err.message)
        if model.ready and not self.draining and not model.handler.takes_rows:
            return self._predict(request, model, None)  # a tensor model: its JSON/raw predict
        return self._predict_rows(request, model)

    async def _predict_rows(self, request: Request, model: DeployedModel) -> Response:
        try:
            self._check_ready(model)
            content_type = request.headers.get("content-type", "")  # multipart needs its boundary
            rows = await self._run_codec(torchserve_codec.body_rows, request.body, content_type)
            infer_request = InferRequest(inputs={ROWS: rows}, batch_size=len(rows))
            response = await self._infer(request, model, infer_request)
            # A handler's header values are data: ones that could split the head are dropped.
            headers = {k: v for k, v in response.metadata.get("headers", [{}])[0].items()
                       if not any(c in f"{k}{v}" for c in "\r\n\0")}
            reply_type = headers.pop("content-type", None)
            try:
                body, reply_type = torchserve_codec.encode_item(response.outputs[PREDICTIONS][0], reply_type)
            except TypeError as err:
                raise ServingError(f"unsupported model output data type: {err}", status=503) from None
            return Response(response.metadata.get("status", [200])[0], body, reply_type, headers or None)
        except ServingError as err:
            return _torchserve_error(err.status, err.message, err.headers or None)

    def close(self):
        self._codec_pool.shutdown(wait=False, cancel_futures=True)
        for model in self.models:
            if model.runner is not None:
                model.runner.close()
            close = getattr(model.handler, "close", None)
            if close is not None:
                close()



# Suffixes of /v1/models/{m}[/versions/{v}] in match order; "" (the model's status) comes last.
_MODEL_ROUTES = (
    (":predict", "POST", App._predict_named),
    (":classify", "POST", App._classify),
    (":regress", "POST", App._regress),
    ("/metadata", "GET", App._model_metadata),
    ("/stats", "GET", App._model_stats),
    ("", "GET", App._model_status),
)
