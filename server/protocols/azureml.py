"""Azure ML's inference server contract (../shared/CONTRACTS.md §7): ``GET /`` (liveness and
readiness: ``Healthy`` once init() ran), ``GET|POST|OPTIONS /score`` (the scoring script, on the
default model) and ``GET /swagger.json[?version=2|3|3.1]``; errors ``{"message": ...}``.

Every reply carries the request-id headers Azure's server echoes (``x-request-id``, a uuid when
the client sent none; ``x-ms-request-id``; ``x-ms-client-request-id``; ``TraceId``), and an id
over 100 characters is a 431. Bodies are Python's ``json.dumps``, byte for byte as Azure's.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Awaitable, Callable

from hyperserve.handlers.azureml.handler import (CALL, INTERNAL_ERROR, REPLY, RUN_FAILED_HEADER, MethodNotScored,
                                                 ScoringCall, ScoringReply)

from .. import __version__
from ..codecs.azureml import json_output, query_pairs
from ..dataplane import DataPlane
from ..errors import DeadlineExceeded, ServingError
from ..http import BodyStream, Request, Response
from ..repository.model import DeployedModel
from ..router import HEALTH, NO_PARAMS, Params, Route
from ..types import Chunks, InferRequest
from . import mlflow
from .common import Context

NAME = "azureml"
HEADER_LIMIT = 100
HTML = "text/html; charset=utf-8"  # Flask's default media type, which Azure's plain replies carry
_HEALTHY = b"Healthy"
log = logging.getLogger("hyperserve.protocols.azureml")


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   run_failed: bool = False) -> Response:
    """Azure's error body; 405s of this profile's routes come here too (the router's ``error``)."""
    out = {RUN_FAILED_HEADER: "True" if run_failed else "False"}
    out.update(headers or {})
    return Response(status, json_output({"message": message}), "application/json", out)


def method_not_allowed(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The router's 405 on these routes, with werkzeug's words, as Azure's server answers it."""
    return error_response(status, "The method is not allowed for the requested URL." if status == 405 else message,
                          headers)


def server_version(environ=os.environ) -> str:
    """x-ms-server-version, as Azure's server sets it (on unless SERVER_VERSION_LOG_RESPONSE_ENABLED
    is false), naming this server as Azure's names itself (azmlinfsrv/1.5.0)."""
    if environ.get("SERVER_VERSION_LOG_RESPONSE_ENABLED", "true").lower() != "true":
        return ""
    return f"hyperserve/{__version__}"


def _request_ids(headers: dict[str, str]) -> tuple[dict[str, str], Response | None]:
    """The id headers to echo, and the 431 for an id that is too long (Azure's checks, in its order)."""
    request_id = headers.get("x-request-id") or str(uuid.uuid4())
    if len(request_id) > HEADER_LIMIT:
        return {}, error_response(431, f"x-request-id must not exceed {HEADER_LIMIT} characters")
    legacy = headers.get("x-ms-request-id", "")
    client = headers.get("x-ms-client-request-id", "")
    if legacy:
        client = client or legacy
    else:
        legacy = client or request_id
    echoed = {"x-request-id": request_id}
    if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
        return echoed, error_response(
            431, f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters")
    echoed["x-ms-request-id"] = legacy
    if client:
        echoed["x-ms-client-request-id"] = client
    return echoed, None


def identified(endpoint: Callable[[Request], Response | Awaitable[Response]]):
    """``endpoint`` with Azure's request-id checks before it and the id headers on its reply."""
    version = server_version()

    async def answer(request: Request, params: Params = NO_PARAMS) -> Response:
        echoed, refused = _request_ids(request.headers)
        response = refused
        if response is None:
            response = endpoint(request)
            if not isinstance(response, Response):
                response = await response
        headers = dict(response.headers or {})
        if version:
            headers["x-ms-server-version"] = version
        headers.update(echoed)
        trace_id = request.headers.get("traceid")
        if trace_id is not None:
            headers["TraceId"] = trace_id
        response.headers = headers
        return response

    return answer


class ScriptBody(BodyStream):
    """An AMLResponse's generator, sent as the script makes it: each chunk on its model thread."""

    def __init__(self, plane: DataPlane, model: DeployedModel, chunks: Chunks):
        self.plane, self.model, self.chunks = plane, model, chunks

    async def next_chunk(self) -> bytes:
        return await self.plane.next_chunk(self.model, self.chunks)

    async def close(self) -> None:
        await self.plane.close_chunks(self.model, self.chunks)


def reply_response(reply: ScoringReply, plane: DataPlane, model: DeployedModel) -> Response:
    headers: dict[str, str] = {}
    for name, value in reply.headers:  # repeated names joined, as HTTP allows
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    headers["x-ms-run-fn-exec-ms"] = f"{reply.run_ms:.3f}"
    body = ScriptBody(plane, model, reply.body) if isinstance(reply.body, Chunks) else reply.body
    return Response(reply.status, body, reply.content_type, headers)


def failure_response(err: BaseException, plane: DataPlane, method: str) -> Response:
    if isinstance(err, MethodNotScored):
        if method == "OPTIONS":  # Azure answers a preflight for a script that is not @rawhttp
            return Response(200, b"", HTML, {RUN_FAILED_HEADER: "False"})
        return error_response(405, err.message)
    if isinstance(err, DeadlineExceeded):
        return error_response(500, f"Scoring timeout after {round(plane.request_timeout * 1000)} ms", run_failed=True)
    if isinstance(err, ServingError):
        headers = dict(err.headers)
        run_failed = headers.pop(RUN_FAILED_HEADER, "False") == "True"
        return error_response(err.status, err.message, headers, run_failed)
    log.error("unhandled error while scoring", exc_info=err)
    return error_response(500, INTERNAL_ERROR)


async def _no_score(model: DeployedModel) -> Response:
    return error_response(404, f"model '{model.name}' ({model.framework}) is neither an Azure ML scoring script nor "
                               "an MLflow model: it has no /score (use /predict)")


async def score(plane: DataPlane, request: Request, model: DeployedModel) -> Response:
    """One call of the scoring script, from any profile's predict route."""
    request.model = model
    call = ScoringCall(request.method, request.path, request.query, request.headers, request.body)
    try:
        response = await plane.infer(model, InferRequest(inputs={CALL: [call]}, batch_size=1), request.headers)
        return reply_response(response.outputs[REPLY][0], plane, model)
    except Exception as err:  # noqa: BLE001 - every failure is answered in Azure's shape
        return failure_response(err, plane, request.method)


def is_scoring_script(model: DeployedModel) -> bool:
    """Chosen before the load (--entry-script), so routes can be built before the model exists."""
    return model.framework == "azureml"


def routes(context: Context) -> list[Route]:
    plane = context.plane
    default = plane.default_model

    def health(request: Request) -> Response:
        reason = plane.not_ready_reason()
        if reason is None:
            return Response(200, _HEALTHY, HTML)
        return error_response(503, f"not ready: {reason}")

    def score_default(request: Request) -> Awaitable[Response]:
        if is_scoring_script(default):
            return score(plane, request, default)
        if mlflow.is_mlflow(default):  # Azure's no-code MLflow deployment
            return mlflow.azure_score(plane, request, default)
        return _no_score(default)

    def api_document(request: Request) -> Response:
        version = next((v for k, v in query_pairs(request.query) if k == "version"), "2")
        try:
            plane.check_ready(default)
            document = default.handler.api_document(version)
        except ServingError as err:
            return error_response(err.status, err.message)
        return Response(200, json_output(document), "application/json", {RUN_FAILED_HEADER: "False"})

    return [Route("/", ("GET",), identified(health), method_not_allowed, HEALTH),
            Route("/score", ("GET", "POST", "OPTIONS"), identified(score_default), method_not_allowed),
            Route("/swagger.json", ("GET",), identified(api_document), method_not_allowed)]


