"""KServe's V1 protocol: GET /v1/models/{m} (status) and POST /v1/models/{m}:predict. TF Serving's
REST API is the same protocol with more routes (tf_serving.py); both serve these two endpoints,
whose bodies hold both protocols' fields."""

from __future__ import annotations

from ..errors import ServingError
from ..http import Request, Response
from ..router import HEALTH, Params, Route
from .common import Context, failure
from .vertex import JsonPredict

NAME = "kserve-v1"

# hyperserve's lifecycle states as TF Serving's model_version_status (state, error_code).
_TF_SERVING_STATES = {"starting": ("START", "OK"), "loading": ("LOADING", "OK"), "ready": ("AVAILABLE", "OK"),
                      "failed": ("END", "UNKNOWN"), "draining": ("UNLOADING", "OK")}


def status(context: Context):
    """KServe v1's {"name", "ready"} and TF Serving's model_version_status in one body."""
    plane = context.plane

    def status(request: Request, params: Params) -> Response:
        try:
            model = plane.model(params["model"], params.get("version"))
        except ServingError as err:
            return failure(err)
        state = plane.status(model)
        tf_state, code = _TF_SERVING_STATES.get(state.state, ("UNKNOWN", "UNKNOWN"))
        body = {"name": model.name, "version": model.version, "ready": state.ready,
                "model_version_status": [{"version": model.version, "state": tf_state, "status": {
                    "error_code": code, "error_message": "" if code == "OK" else state.reason}}]}
        if state.ready:
            return Response.json(body)
        return Response.json({**body, "error": state.reason}, status=503)

    return status


def predict(context: Context):
    plane = context.plane
    json_predict = JsonPredict(plane)

    def predict(request: Request, params: Params):
        try:
            model = request.model = plane.model(params["model"], params.get("version"))
        except ServingError as err:
            return failure(err)
        return json_predict(request, model)

    return predict


def routes(context: Context) -> list[Route]:
    return [Route("/v1/models/{model}:predict", ("POST",), context.shared(predict)),
            Route("/v1/models/{model}", ("GET",), context.shared(status), kind=HEALTH)]
