"""TensorFlow Serving's REST API: KServe v1's status and predict (shared with kserve_v1.py), with
versions, plus :classify and :regress (tf.Example inputs) and /metadata (the signature_defs)."""

from __future__ import annotations

from ..codecs import tf_examples, vertex_json
from ..errors import InvalidInput, ServingError
from ..http import Request, Response
from ..router import HEALTH, Params, Route
from ..types import InferRequest
from . import kserve_v1
from .common import Context, failure

NAME = "tf-serving"
_MODEL = "/v1/models/{model}"
_VERSION = "/v1/models/{model}/versions/{version}"


def _examples(context: Context, method: str):
    """tf.Example inputs to a signature whose method_name is classify or regress."""
    plane = context.plane
    kind = "classification" if method == tf_examples.CLASSIFY else "regression"
    encode = tf_examples.classify_result if method == tf_examples.CLASSIFY else tf_examples.regress_result

    async def examples(request: Request, params: Params) -> Response:
        try:
            model = request.model = plane.model(params["model"], params.get("version"))
            plane.check_ready(model)
            handler = model.handler
            if not handler.capabilities.tf_serving_metadata:
                raise InvalidInput(f"model '{model.name}' ({model.framework}) has no {kind} signature: "
                                   ":classify and :regress are for TensorFlow SavedModels")
            decoded, name = await plane.run_codec(tf_examples.decode_examples, request.body)
            name = name or handler.signature_names()[0]
            actual = handler.signature_method(name)  # an unknown name is a 400
            if actual != method:
                raise InvalidInput(f"Expected {kind} signature method_name to be {method}. Was: {actual}")
            signature = handler.signature_named(name)
            infer_request = InferRequest(inputs={signature.inputs[0].name: decoded}, batch_size=len(decoded),
                                         signature_name=name)
            response = await plane.infer(model, infer_request, request.headers)
            return Response(200, vertex_json.dumps(encode(response.outputs, len(decoded))))
        except ServingError as err:
            return failure(err)

    return examples


def metadata(context: Context):
    plane = context.plane

    def metadata(request: Request, params: Params) -> Response:
        try:
            model = plane.loaded(plane.model(params["model"], params.get("version")))
        except ServingError as err:
            return failure(err)
        handler = model.handler
        body = {"name": model.name, "version": model.version, "framework": model.framework,
                "signature": model.signature.describe()}
        if handler.capabilities.tf_serving_metadata:
            body["model_spec"] = {"name": model.name, "signature_name": "", "version": model.version}
            body["metadata"] = {"signature_def": {"signature_def": handler.signature_defs()}}
        return Response(200, vertex_json.dumps(body))

    return metadata


def routes(context: Context) -> list[Route]:
    predict, status = context.shared(kserve_v1.predict), context.shared(kserve_v1.status)
    classify = _examples(context, tf_examples.CLASSIFY)
    regress = _examples(context, tf_examples.REGRESS)
    meta = metadata(context)
    table = []
    for base in (_MODEL, _VERSION):
        table += [Route(base + ":predict", ("POST",), predict), Route(base + ":classify", ("POST",), classify),
                  Route(base + ":regress", ("POST",), regress), Route(base + "/metadata", ("GET",), meta),
                  Route(base, ("GET",), status, kind=HEALTH)]
    return table


