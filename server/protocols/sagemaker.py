"""SageMaker's hosting contract: GET /ping (200 only when every model can serve) and POST
/invocations (the Vertex JSON predict, on the default model, without Vertex's reply extras)."""

from __future__ import annotations

import orjson

from ..http import Request, Response
from ..router import NO_PARAMS, Params, Route
from .common import Context
from .vertex import JsonPredict, health_body

NAME = "sagemaker"
_HEALTHY = b'{"status":"Healthy"}'


def ping(context: Context):
    """/ping as SageMaker and TorchServe answer it; one endpoint both profiles share."""
    plane = context.plane

    def ping(request: Request, params: Params = NO_PARAMS) -> Response:
        ready = health_body(plane)
        if ready.status == 200:
            return Response(200, _HEALTHY)
        return Response.json({"status": "Unhealthy", "error": orjson.loads(ready.body)["error"]}, status=ready.status)

    return ping


def routes(context: Context) -> list[Route]:
    plane = context.plane
    predict = JsonPredict(plane)

    default = plane.default_model  # the repository never changes while serving

    def invocations(request: Request, params: Params = NO_PARAMS):
        return predict(request, default)

    return [Route("/ping", ("GET",), context.shared(ping)), Route("/invocations", ("POST",), invocations)]
