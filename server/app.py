"""Routes: which path answers what, for every platform profile at once, over one model repository.

| profile   | readiness                         | predict (JSON, or raw by Content-Type)       |
|-----------|-----------------------------------|----------------------------------------------|
| Vertex AI | GET $AIP_HEALTH_ROUTE (/health)   | POST $AIP_PREDICT_ROUTE (/predict)            |
| KServe v1 | GET /v1/models/{m}                | POST /v1/models/{m}:predict                   |
| SageMaker | GET /ping                         | POST /invocations                             |
| liveness  | GET /live (200 while the process runs)                                            |
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from .codecs import raw as raw_codec
from .codecs import vertex_json
from .errors import InvalidInput, ServingError, UnsupportedMediaType
from .http import Request, Response
from .repository.model import DeployedModel
from .repository.models import ModelRepository

# JSON bodies larger than this are decoded on a codec thread, not on the event loop.
OFF_LOOP_DECODE_BYTES = 256 * 1024

_ALIVE = b'{"status":"alive"}'
_READY = b'{"status":"ready"}'

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
        self.routes: dict[str, dict[str, Endpoint]] = {}
        self._add("/live", "GET", self.live)
        self._add("/ping", "GET", self.health)
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
        if model.ready and not self.draining:
            return Response.json({"name": model.name, "version": model.version, "ready": True})
        return Response.json({"name": model.name, "version": model.version, "ready": False,
                              "error": model.lifecycle.reason}, status=503)

    def _model_metadata(self, request: Request, model: DeployedModel) -> Response:
        if model.signature is None:
            return Response.error(503, f"model '{model.name}' is not loaded yet ({model.lifecycle.reason})")
        return Response(200, vertex_json.dumps({"name": model.name, "version": model.version,
                                                "framework": model.framework,
                                                "signature": model.signature.describe()}))

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

    def predict_vertex(self, request: Request) -> Awaitable[Response]:
        extra = {"deployedModelId": self.deployed_model_id} if self.deployed_model_id else None
        return self._predict(request, self.models.default_model, extra)

    def predict_default(self, request: Request) -> Awaitable[Response]:
        return self._predict(request, self.models.default_model, None)

    def _predict_named(self, request: Request, model: DeployedModel) -> Awaitable[Response]:
        return self._predict(request, model, None)

    async def _predict(self, request: Request, model: DeployedModel, extra: dict[str, Any] | None) -> Response:
        try:
            if self.draining or not model.ready:
                raise model.not_ready_error() if not self.draining else ServingError(
                    "the server is shutting down", status=503)
            signature = model.signature
            content_type = request.content_type
            fmt = vertex_json.ROW
            if is_json(content_type):
                if len(request.body) > OFF_LOOP_DECODE_BYTES:
                    loop = asyncio.get_running_loop()
                    infer_request, fmt = await loop.run_in_executor(
                        self._codec_pool, vertex_json.decode_predict_request, request.body, signature)
                else:
                    infer_request, fmt = vertex_json.decode_predict_request(request.body, signature)
            else:
                infer_request = raw_codec.decode_raw_request(content_type, request.body, signature)
                if infer_request.raw is not None and not model.handler.accepts_raw:
                    raise UnsupportedMediaType(
                        f"model '{model.name}' ({model.framework}) does not take {content_type or 'untyped'} bodies; "
                        "send application/json, application/x-npy or application/octet-stream")
            infer_request.headers = request.headers
            timeout = request_timeout(request.headers, infer_request.parameters, self.request_timeout)
            if timeout > 0:
                infer_request.deadline = time.monotonic() + timeout
            response = await model.runner.infer(infer_request)
            body = vertex_json.encode_predict_response(response, infer_request.batch_size, fmt, extra)
            return Response(200, body)
        except ServingError as err:
            return Response.error(err.status, err.message, err.headers or None)

    def close(self):
        self._codec_pool.shutdown(wait=False, cancel_futures=True)
        for model in self.models:
            if model.runner is not None:
                model.runner.close()



# Suffixes of /v1/models/{m}[/versions/{v}] in match order; "" (the model's status) comes last.
_MODEL_ROUTES = (
    (":predict", "POST", App._predict_named),
    ("/metadata", "GET", App._model_metadata),
    ("/stats", "GET", App._model_stats),
    ("", "GET", App._model_status),
)
