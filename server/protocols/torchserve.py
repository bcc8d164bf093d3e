"""TorchServe's inference API: GET /ping, and POST|PUT /predictions/{model}[/{version}], where the
body (or each multipart form field) is one row for the model's handler. Errors are TorchServe's
body: {"code", "type", "message"}."""

from __future__ import annotations

from hyperserve.handlers.base import Inputs
from hyperserve.handlers.torchserve.handler import PREDICTIONS, ROWS

from ..codecs import torchserve as torchserve_codec
from ..errors import ServingError
from ..http import Request, Response
from ..router import HEALTH, Params, Route
from ..types import InferRequest
from .common import Context
from .sagemaker import ping
from .vertex import JsonPredict

NAME = "torchserve"

_ERROR_TYPES = {400: "BadRequestException", 404: "ModelNotFoundException", 405: "MethodNotAllowedException",
                413: "RequestEntityTooLargeException", 503: "ServiceUnavailableException",
                504: "RequestTimeoutException", 507: "InsufficientStorageException"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    kind = _ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "BadRequestException")
    return Response.json({"code": status, "type": kind, "message": message}, status=status, headers=headers)


def routes(context: Context) -> list[Route]:
    plane = context.plane
    tensors = JsonPredict(plane)

    async def rows(request: Request, model) -> Response:
        try:
            plane.check_ready(model)
            content_type = request.headers.get("content-type", "")  # multipart needs its boundary
            body_rows = await plane.run_codec(torchserve_codec.body_rows, request.body, content_type)
            response = await plane.infer(model, InferRequest(inputs={ROWS: body_rows}, batch_size=len(body_rows)),
                                         request.headers)
            # The transport checks what the handler set (names, values, status) before sending.
            headers = dict(response.metadata.get("headers", [{}])[0])
            reply_type = headers.pop("content-type", None)
            try:
                body, reply_type = torchserve_codec.encode_item(response.outputs[PREDICTIONS][0], reply_type)
            except TypeError as err:
                raise ServingError(f"unsupported model output data type: {err}", status=503) from None
            return Response(response.metadata.get("status", [200])[0], body, reply_type, headers or None)
        except ServingError as err:
            return error(err.status, err.message, err.headers or None)

    def predictions(request: Request, params: Params):
        try:
            model = request.model = plane.model(params["model"], params.get("version"))
        except ServingError as err:
            return error(err.status, err.message)
        if plane.model_ready(model) and model.handler.capabilities.inputs is not Inputs.ROWS:
            return tensors(request, model)  # a tensor model: its JSON/raw predict
        return rows(request, model)

    methods = ("POST", "PUT")
    return [Route("/ping", ("GET",), context.shared(ping), kind=HEALTH),
            Route("/predictions/{model}", methods, predictions, error),
            Route("/predictions/{model}/{version}", methods, predictions, error)]
