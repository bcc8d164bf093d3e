"""SageMaker's hosting contract: GET /ping (200 only when every model can serve) and POST
/invocations (the Vertex JSON predict, on the default model, without Vertex's reply extras; for an
MLflow model, MLflow's scoring protocol, as SageMaker's MLflow image serves it)."""

from __future__ import annotations

import orjson

from ..dataplane import DataPlane
from ..http import Request, Response
from ..router import HEALTH, Route
from . import mlflow
from .common import Context
from .vertex import health_body

NAME = "sagemaker"
_HEALTHY = b'{"status":"Healthy"}'


def sagemaker_ping(plane: DataPlane):
    def ping(request: Request) -> Response:
        ready = health_body(plane)
        if ready.status == 200:
            return Response(200, _HEALTHY)
        return Response.json({"status": "Unhealthy", "error": orjson.loads(ready.body)["error"]}, status=ready.status)

    return ping


# /ping as SageMaker and TorchServe answer it (MLflow's for an MLflow model): one endpoint the profiles share.
ping = mlflow.ping


def routes(context: Context) -> list[Route]:
    return [Route("/ping", ("GET",), context.shared(ping), kind=HEALTH),
            Route("/invocations", ("POST",), context.shared(mlflow.invocations))]
