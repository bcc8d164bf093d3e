"""Vertex AI's prediction container contract: GET $AIP_HEALTH_ROUTE (readiness) and POST
$AIP_PREDICT_ROUTE (predict with JSON, rawPredict by Content-Type), on the default model.

``JsonPredict`` is the predict every profile that took TF Serving's envelope shares (KServe v1's
``:predict``, SageMaker's ``/invocations``): by what the model's handler takes, the body goes to
the Vertex JSON codec (tensors), the TorchServe instance rows codec (rows) or CPR (the whole request).
"""

from __future__ import annotations

from typing import Any, Awaitable

from hyperserve.handlers.base import Inputs, RawBodies
from hyperserve.handlers.torchserve.handler import PREDICTIONS, ROWS

from ..codecs import raw as raw_codec
from ..codecs import torchserve as torchserve_codec
from ..codecs import vertex_json
from ..dataplane import DataPlane
from ..errors import ServingError, UnsupportedMediaType
from ..http import Deferred, Request, Response
from ..repository.model import DeployedModel
from ..router import HEALTH, NO_PARAMS, Params, Route
from ..scheduler.runner import Split
from ..types import RAW_BODIES, InferRequest, InferResponse
from . import azureml, cpr, mlflow
from .common import Context, DeferredInfer, failure, is_json

NAME = "vertex"
_READY = b'{"status":"ready"}'


def predictions_split(fmt: str, extra: dict[str, Any] | None) -> Split:
    """The scheduler's split for JSON replies: every request's body from the batch's response, in
    one call where the model ran."""
    def split(response: InferResponse, requests: list[InferRequest]) -> list[bytes]:
        return vertex_json.encode_predict_responses(response, [r.batch_size for r in requests], fmt, extra)
    return split


def _answer(reply: Deferred, result: bytes | BaseException) -> None:
    reply.resolve(Response(200, result) if type(result) is bytes else failure(result))


def _rows_request(body: bytes | memoryview) -> InferRequest:
    rows, parameters = torchserve_codec.instance_rows(body)
    return InferRequest(inputs={ROWS: rows}, batch_size=len(rows), parameters=parameters)


def decode_tensors(request: Request, model: DeployedModel) -> tuple[InferRequest, str]:
    """The body → an InferRequest typed by the model's signature, by Content-Type."""
    content_type = request.content_type
    handler = model.handler
    if is_json(content_type):
        # A signature_name picks the signature (its inputs and dtypes); an unknown one is a 400.
        return vertex_json.decode_predict_request(request.body, model.signature, handler.signature_named)
    infer_request = raw_codec.decode_raw_request(content_type, request.body, model.signature)
    if infer_request.raw is not None:
        raw_bodies = handler.capabilities.raw_bodies
        if raw_bodies is RawBodies.NONE:
            raise UnsupportedMediaType(
                f"model '{model.name}' ({model.framework}) does not take {content_type or 'untyped'} bodies; "
                "send application/json, application/x-npy or application/octet-stream")
        if raw_bodies is RawBodies.BATCHED:  # one row per body, so that concurrent bodies share a call
            infer_request = InferRequest(inputs={RAW_BODIES: [infer_request.raw]}, batch_size=1)
    return infer_request, vertex_json.ROW


class JsonPredict:
    """Predict with TF Serving's envelope ({"instances"} or {"inputs"}), or a raw body."""

    def __init__(self, plane: DataPlane, extra: dict[str, Any] | None = None):
        self.plane = plane
        self.extra = extra
        # One split object per format: the scheduler makes a batch's replies in one call when its
        # requests share one.
        splits = {fmt: predictions_split(fmt, extra) for fmt in (vertex_json.ROW, vertex_json.COLUMNAR)}
        self._tensors = DeferredInfer(plane, decode_tensors, lambda model, fmt: splits[fmt], _answer)
        self._mlflow = mlflow.Invocations(plane)

    def __call__(self, request: Request, model: DeployedModel) -> Response | Deferred | Awaitable[Response]:
        request.model = model
        plane = self.plane
        if plane.draining or not model.lifecycle.ready:
            try:
                plane.check_ready(model)
            except ServingError as err:
                return failure(err)
        inputs = model.handler.capabilities.inputs
        if inputs is Inputs.TENSORS:
            return self._tensors(request, model)
        if inputs is Inputs.REQUEST:
            return cpr.predict(plane, request, model)
        if inputs is Inputs.SCORING_SCRIPT:  # as if POSTed to the script's /score
            return azureml.score(plane, request, model)
        if inputs is Inputs.PYFUNC:  # {"instances"} and {"inputs"} are MLflow's own formats
            return self._mlflow.pyfunc(request.body, "application/json", model)
        return self._rows(request, model)

    async def _rows(self, request: Request, model: DeployedModel) -> Response:
        """A handler that takes rows (TorchServe's): each instance is one row."""
        try:
            if is_json(request.content_type):
                infer_request = await self.plane.run_codec(_rows_request, request.body)
            else:
                infer_request, _ = decode_tensors(request, model)
            response = await self.plane.infer(model, infer_request, request.headers)
            status = next((s for s in response.metadata.get("status", ()) if s != 200), 200)
            return Response(status, torchserve_codec.predictions_body(response.outputs[PREDICTIONS], self.extra))
        except ServingError as err:
            return failure(err)


def health_body(plane: DataPlane) -> Response:
    reason = plane.not_ready_reason()
    if reason is None:
        return Response(200, _READY)
    return Response.error(503, f"not ready: {reason}")


def health(context: Context):
    """The Vertex readiness route; at /health, MLflow's too (one endpoint both profiles share): an
    MLflow model answers it as MLflow's server does, with the same status."""
    plane = context.plane
    default = plane.default_model
    mlflow_ping = context.shared(mlflow.ping)

    def health(request: Request, params: Params = NO_PARAMS) -> Response:
        if mlflow.is_mlflow(default) and context.settings.health_route == mlflow.HEALTH_ROUTE:
            return mlflow_ping(request)
        return health_body(plane)

    return health


def routes(context: Context) -> list[Route]:
    plane, settings = context.plane, context.settings
    extra = {"deployedModelId": settings.deployed_model_id} if settings.deployed_model_id else None
    predict = JsonPredict(plane, extra)
    default = plane.default_model  # the repository never changes while serving

    def predict_default(request: Request, params: Params = NO_PARAMS):
        return predict(request, default)

    return [Route(settings.health_route, ("GET",), context.shared(health), kind=HEALTH),
            Route(settings.predict_route, ("POST",), predict_default)]
