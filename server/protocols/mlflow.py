"""MLflow's scoring server contract (``mlflow models serve``; SageMaker's MLflow image), for MLflow
models (../shared/CONTRACTS.md §8): ``GET /ping`` and ``/health`` (200, body "\\n", once the model is
loaded), ``GET /version``, and ``POST /invocations`` (``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` with ``params``, or ``text/csv``) → ``{"predictions": ...}``; errors
``{"error_code", "message"}``, and 415 as plain text, as MLflow sends them.

``/ping`` and ``/invocations`` are SageMaker's routes too: one endpoint serves both profiles, MLflow's
answer for an MLflow model and SageMaker's for any other (SageMaker's MLflow image speaks MLflow's).
"""

from __future__ import annotations

import logging
from typing import Awaitable

import orjson

from hyperserve.handlers.base import Inputs
from hyperserve.handlers.mlflow import INVOCATION, REPLY

from ..codecs import mlflow as codec
from ..codecs import vertex_json
from ..dataplane import DataPlane
from ..errors import DeadlineExceeded, ModelError, NotFound, NotReady, Overloaded, ServingError, UnsupportedMediaType
from ..http import Deferred, Request, Response
from ..repository.model import DeployedModel
from ..router import HEALTH, NO_PARAMS, Params, Route
from ..types import InferRequest
from .common import Context, DeferredInfer

NAME = "mlflow"
HEALTH_ROUTE = "/health"
log = logging.getLogger("hyperserve.protocols.mlflow")
_PING = b"\n"
MODEL_FAILED = ("Encountered an unexpected error while evaluating the model. Verify that the serialized input "
                "Dataframe is compatible with the model for inference.")


def is_mlflow(model: DeployedModel) -> bool:
    """Known once the model's files were looked at (the framework is detected at load)."""
    return model.framework == "mlflow"


def error_response(err: BaseException) -> Response:
    """A failure in MLflow's shape."""
    if isinstance(err, UnsupportedMediaType):
        return Response(415, err.message.encode(), "text/plain")
    if isinstance(err, DeadlineExceeded):
        return Response(504, b"Request processing time exceeded limit", "application/json")
    if isinstance(err, codec.MlflowInputError):
        status, code, message = 400, err.error_code, err.message
    elif isinstance(err, ModelError):  # MLflow answers a model's exception as the client's mistake
        status, code, message = 400, codec.BAD_REQUEST, MODEL_FAILED
        log.warning("the model raised: %s", err.message)
    elif isinstance(err, (NotReady, Overloaded)):
        status, code, message = err.status, "TEMPORARILY_UNAVAILABLE", err.message
    elif isinstance(err, NotFound):
        status, code, message = 404, "RESOURCE_DOES_NOT_EXIST", err.message
    elif isinstance(err, ServingError):
        status, code, message = err.status, codec.BAD_REQUEST if err.status < 500 else "INTERNAL_ERROR", err.message
    else:
        log.error("unhandled error while scoring", exc_info=err)
        status, code, message = 500, "INTERNAL_ERROR", f"internal server error: {type(err).__name__}"
    return Response(status, orjson.dumps({"error_code": code, "message": message}), "application/json",
                    dict(getattr(err, "headers", None) or {}) or None)


def _answer(reply: Deferred, result: bytes | BaseException) -> None:
    reply.resolve(Response(200, result) if type(result) is bytes else error_response(result))


class Invocations:
    """POST /invocations for an MLflow model: natively served flavors through the codec and the
    batching scheduler; pyfunc models through MLflow's own scoring, on the model thread."""

    def __init__(self, plane: DataPlane):
        self.plane = plane
        split = predictions_split()
        self._native = DeferredInfer(plane, self._decode, lambda model, key: split, _answer, error_response)

    @staticmethod
    def _decode(request: Request, model: DeployedModel) -> tuple[InferRequest, None]:
        signature = model.signature
        return codec.decode(request.body, request.headers.get("content-type", ""), signature.inputs,
                            signature.column_based), None

    def __call__(self, request: Request, model: DeployedModel) -> Response | Deferred | Awaitable[Response]:
        request.model = model
        try:
            self.plane.check_ready(model)
        except ServingError as err:
            return error_response(err)
        if model.handler.capabilities.inputs is Inputs.PYFUNC:
            return self.pyfunc(request.body, request.headers.get("content-type", ""), model)
        return self._native(request, model)

    async def pyfunc(self, body: bytes, content_type: str, model: DeployedModel) -> Response:
        try:
            response = await self.plane.infer(model, InferRequest(inputs={INVOCATION: [(body, content_type)]},
                                                                  batch_size=1))
        except Exception as err:  # noqa: BLE001 - answered in MLflow's shape
            return error_response(err)
        status, reply, media_type = response.outputs[REPLY][0]
        return Response(status, reply, media_type)


def predictions_split():
    from .vertex import predictions_split as vertex_split

    return vertex_split(vertex_json.ROW, None)  # {"predictions": [...]}: MLflow's reply has Vertex's shape


def invocations(context: Context):
    """The /invocations endpoint SageMaker's and MLflow's profiles share."""
    from .vertex import JsonPredict

    plane = context.plane
    mlflow_invocations = Invocations(plane)
    sagemaker_predict = JsonPredict(plane)
    default = plane.default_model

    def invocations(request: Request, params: Params = NO_PARAMS):
        if is_mlflow(default):
            return mlflow_invocations(request, default)
        return sagemaker_predict(request, default)

    return invocations


def ping(context: Context):
    """/ping as SageMaker, TorchServe and MLflow answer it; one endpoint all three profiles share."""
    from .sagemaker import sagemaker_ping

    plane = context.plane
    other = sagemaker_ping(plane)
    default = plane.default_model

    def ping(request: Request, params: Params = NO_PARAMS) -> Response:
        if is_mlflow(default):
            return Response(200, _PING) if plane.not_ready_reason() is None else \
                error_response(NotReady(f"not ready: {plane.not_ready_reason()}"))
        return other(request)

    return ping


async def azure_score(plane: DataPlane, request: Request, model: DeployedModel) -> Response:
    """Azure's no-code MLflow deployment on /score: ``{"input_data", "params"}`` in, the bare
    predictions out (Azure's generated scoring script drops MLflow's ``predictions`` key)."""
    try:
        plane.check_ready(model)
        document = orjson.dumps(codec.azure_document(request.body))
        if model.handler.capabilities.inputs is Inputs.PYFUNC:
            response = await Invocations(plane).pyfunc(document, "application/json", model)
            if response.status != 200:
                return response
            return Response(200, orjson.dumps(orjson.loads(response.body)["predictions"]))
        signature = model.signature
        infer_request = await plane.run_codec(codec.decode, document, "application/json", signature.inputs,
                                              signature.column_based)
        outputs = (await plane.infer(model, infer_request, request.headers)).outputs
        predictions = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return Response(200, orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY))
    except Exception as err:  # noqa: BLE001 - answered in MLflow's shape
        return error_response(err)


def routes(context: Context) -> list[Route]:
    from .vertex import health

    plane = context.plane
    ping_endpoint = context.shared(ping)
    default = plane.default_model

    def mlflow_only(endpoint):
        """Routes only MLflow's server has: for another model, as if they were not there (the
        framework is known only once the model's files were looked at)."""
        def answer(request: Request, params: Params = NO_PARAMS) -> Response:
            if is_mlflow(default):
                return endpoint(request, params)
            return Response.error(404, f"no route for {request.path}")
        return answer

    # Vertex's readiness route is /health unless AIP_HEALTH_ROUTE moves it: then one endpoint serves both.
    health_endpoint = context.shared(health) if context.settings.health_route == HEALTH_ROUTE \
        else mlflow_only(ping_endpoint)

    @mlflow_only
    def version(request: Request, params: Params = NO_PARAMS) -> Response:
        found = str(default.handler.describe().get("mlflow_version") or "") if default.handler is not None else ""
        return Response(200, found.encode(), "application/json")

    return [Route("/ping", ("GET",), ping_endpoint, kind=HEALTH),
            Route(HEALTH_ROUTE, ("GET",), health_endpoint, kind=HEALTH),
            Route("/version", ("GET",), version), Route("/invocations", ("POST",), context.shared(invocations))]
