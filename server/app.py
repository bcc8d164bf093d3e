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
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from .codecs import raw as raw_codec
from .codecs import vertex_json
from .errors import ServingError, UnsupportedMediaType
from .http import Request, Response
from .repository.model import DeployedModel

# JSON bodies larger than this are decoded on a codec thread, not on the event loop.
OFF_LOOP_DECODE_BYTES = 256 * 1024

_ALIVE = b'{"status":"alive"}'
_READY = b'{"status":"ready"}'

Endpoint = Callable[[Request], "Response | Awaitable[Response]"]


def is_json(content_type: str) -> bool:
    return content_type in ("", "application/json") or content_type.endswith("+json")


class App:
    def __init__(self, models: dict[str, DeployedModel], default_model: str, *, health_route: str = "/health",
                 predict_route: str = "/predict", deployed_model_id: str = "", request_timeout: float = 0.0):
        self.models = models
        self.default_model = default_model
        self.deployed_model_id = deployed_model_id
        self.request_timeout = request_timeout
        self.draining = False
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
        rest = request.path[len("/v1/models/"):]
        if rest.endswith(":predict"):
            name, method, endpoint = rest[: -len(":predict")], "POST", self._predict_named
        else:
            name, method, endpoint = rest, "GET", self._model_status
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return Response.error(405, f"method {request.method} is not allowed on {request.path} (allowed: {method})",
                                  headers={"allow": method})
        model = self.models.get(name)
        if model is None:
            return Response.error(404, f"model '{name}' is not served here (models: {sorted(self.models)})")
        return endpoint(request, model)

    # -- health ----------------------------------------------------------------------------

    def live(self, request: Request) -> Response:
        return Response(200, _ALIVE)

    def health(self, request: Request) -> Response:
        if self.draining:
            return Response.error(503, "not ready: the server is shutting down")
        for model in self.models.values():
            if not model.ready:
                return Response.error(503, f"not ready: model '{model.name}' is {model.lifecycle.reason}")
        return Response(200, _READY)

    def _model_status(self, request: Request, model: DeployedModel) -> Response:
        if model.ready and not self.draining:
            return Response.json({"name": model.name, "ready": True})
        return Response.json({"name": model.name, "ready": False, "error": model.lifecycle.reason}, status=503)

    # -- predict ---------------------------------------------------------------------------

    def predict_vertex(self, request: Request) -> Awaitable[Response]:
        extra = {"deployedModelId": self.deployed_model_id} if self.deployed_model_id else None
        return self._predict(request, self.models[self.default_model], extra)

    def predict_default(self, request: Request) -> Awaitable[Response]:
        return self._predict(request, self.models[self.default_model], None)

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
            if self.request_timeout > 0:
                infer_request.deadline = time.monotonic() + self.request_timeout
            response = await model.runner.infer(infer_request)
            body = vertex_json.encode_predict_response(response, infer_request.batch_size, fmt, extra)
            return Response(200, body)
        except ServingError as err:
            return Response.error(err.status, err.message, err.headers or None)

    def close(self):
        self._codec_pool.shutdown(wait=False, cancel_futures=True)
        for model in self.models.values():
            if model.runner is not None:
                model.runner.close()

