"""The Open Inference Protocol v2 over REST (KServe v2, Triton's HTTP API), with the extensions
``tritonclient`` and ``perf_analyzer`` call: binary tensor data, model configuration, statistics and
the repository index. Errors are {"error": "..."} with the status Triton's server uses.

The reply bodies come from ``oip`` (shared with the gRPC front-end), the tensors from ``codecs.v2``.
"""

from __future__ import annotations



import orjson

from hyperserve.handlers.base import Inputs

from ..codecs import v2 as codec
from ..dataplane import DataPlane
from ..errors import InvalidInput, ServingError
from ..http import Deferred, Request, Response
from ..repository.model import DeployedModel
from ..router import HEALTH, NO_PARAMS, Params, Route
from ..types import InferRequest, InferResponse
from . import oip
from .common import Context, DeferredInfer, failure

NAME = "v2"
HEADER_LENGTH = "inference-header-content-length"
_LIVE = b'{"live":true}'
_READY = b'{"ready":true}'


def decode(request: Request, model: DeployedModel) -> tuple[InferRequest, codec.RequestedOutputs]:
    if model.handler.capabilities.inputs is not Inputs.TENSORS:
        raise InvalidInput(f"model '{model.name}' ({model.framework}) takes {model.handler.capabilities.inputs.value}, "
                           "not tensors: use its Vertex or TorchServe route")
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        try:
            length = int(length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {length!r}") from None
    return codec.decode_infer_request(request.body, length, model.signature, model.name)


def _reply_split(model: DeployedModel, wanted: codec.RequestedOutputs):
    """Encodes one request's reply where the model ran (its own split: replies differ by request)."""
    def split(response: InferResponse, requests: list[InferRequest]) -> list[Response]:
        body, header_length = codec.encode_infer_response(response, wanted, model.name, model.version)
        if header_length is None:
            return [Response(200, body)]
        return [Response(200, body, "application/octet-stream", {HEADER_LENGTH: str(header_length)})]
    return split


def _answer(reply: Deferred, result: Response | BaseException) -> None:
    reply.resolve(result if isinstance(result, Response) else failure(result))


class Infer:
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self._infer = DeferredInfer(plane, decode, _reply_split, _answer)

    def __call__(self, request: Request, params: Params) -> Response | Deferred:
        plane = self.plane
        try:
            model = request.model = plane.model(params["model"], params.get("version"))
            plane.check_ready(model)
        except ServingError as err:
            return failure(err)
        return self._infer(request, model)


def routes(context: Context) -> list[Route]:
    plane = context.plane

    def model_route(answer):
        """An endpoint on /v2/models/{model}[/versions/{version}]/...: the model, or its error."""
        def endpoint(request: Request, params: Params) -> Response:
            try:
                return Response(200, orjson.dumps(answer(plane.model(params["model"], params.get("version")))))
            except ServingError as err:
                return failure(err)
        return endpoint

    def server_metadata(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response.json(oip.server_metadata(plane))

    def live(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response(200, _LIVE)

    def ready(request: Request, params: Params = NO_PARAMS) -> Response:
        reason = plane.not_ready_reason()
        return Response(200, _READY) if reason is None else Response.error(503, f"not ready: {reason}")

    def model_ready(request: Request, params: Params) -> Response:
        try:
            model = plane.model(params["model"], params.get("version"))
        except ServingError as err:
            return failure(err)
        status = plane.status(model)
        if status.ready:
            return Response.json({"name": model.name, "ready": True})
        return Response.error(503, f"model '{model.name}' is not ready ({status.reason})")

    def all_stats(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response.json({"model_stats": [oip.model_statistics(plane, m) for m in plane.models]})

    def repository_index(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response.json(oip.repository_index(plane))

    metadata = model_route(lambda m: oip.model_metadata(plane, m))
    config = model_route(lambda m: oip.model_config(plane, m))
    stats = model_route(lambda m: {"model_stats": [oip.model_statistics(plane, m)]})
    infer = Infer(plane)
    table = [Route("/v2", ("GET",), server_metadata), Route("/v2/health/live", ("GET",), live, kind=HEALTH),
             Route("/v2/health/ready", ("GET",), ready, kind=HEALTH), Route("/v2/models/stats", ("GET",), all_stats),
             Route("/v2/repository/index", ("POST",), repository_index)]
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        table += [Route(base + "/infer", ("POST",), infer), Route(base + "/ready", ("GET",), model_ready, kind=HEALTH),
                  Route(base + "/config", ("GET",), config), Route(base + "/stats", ("GET",), stats),
                  Route(base, ("GET",), metadata)]
    return table


