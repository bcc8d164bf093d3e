"""Vertex AI's Custom Prediction Routines on the Vertex predict route: the whole request dict in,
the predictor's dict (or a custom CPR handler's response) out, with Google's DefaultSerializer's
rules (../shared/CONTRACTS.md §1). CPR has no routes of its own: the Vertex profile sends models
whose handler takes the whole request (Inputs.REQUEST) here."""

from __future__ import annotations

from typing import Any

from hyperserve.handlers.base import RawBodies
from hyperserve.handlers.cpr import INSTANCES, PREDICTIONS, REQUEST, RESPONSE, RawReply

from ..codecs import vertex_json
from ..dataplane import DataPlane
from ..errors import InvalidInput, ServingError
from ..http import Request, Response
from ..repository.model import DeployedModel
from ..types import InferRequest, RawBody
from .common import failure


def decode(body: bytes | memoryview, row_wise: bool) -> InferRequest:
    """A CPR predictor takes the whole request dict; Google's row-wise predictors take the
    instances, so that concurrent requests can share a call."""
    doc = vertex_json.parse_json(body)
    instances = doc.get("instances") if type(doc) is dict else None
    if row_wise and type(instances) is list and instances:
        return InferRequest(inputs={INSTANCES: instances}, batch_size=len(instances))
    return InferRequest(inputs={REQUEST: [doc]}, batch_size=1)


def encode(result: Any) -> Response:
    if isinstance(result, RawReply):
        return Response(result.status, result.body, result.content_type, result.headers or None)
    try:
        return Response(200, vertex_json.dumps_tf(result, {"": result}))
    except TypeError as err:
        raise InvalidInput(f"JSON serialization failed for the prediction result: {err}") from None


async def predict(plane: DataPlane, request: Request, model: DeployedModel) -> Response:
    request.model = model
    try:
        capabilities = model.handler.capabilities
        if capabilities.raw_bodies is not RawBodies.NONE:  # a custom CPR handler reads the request itself
            infer_request = InferRequest(inputs={REQUEST: [None]}, batch_size=1,
                                         raw=RawBody(request.headers.get("content-type", ""), request.body))
        elif request.content_type != "application/json":  # as Google's DefaultSerializer
            raise InvalidInput(f"Unsupported content type of the request: {request.content_type or None}. "
                               "Currently supported content-type in DefaultSerializer: \"application/json\".")
        else:
            # Google's row-wise predictors are the batchable ones
            infer_request = await plane.run_codec(decode, request.body, capabilities.batchable)
        response = await plane.infer(model, infer_request, request.headers)
        if RESPONSE in response.outputs:
            return encode(response.outputs[RESPONSE][0])
        return encode({PREDICTIONS: response.outputs[PREDICTIONS]})
    except ServingError as err:
        return failure(err)
