"""The Open Inference Protocol v2's gRPC messages ⇄ InferRequest / InferResponse: pure functions
over the protobuf messages (server/grpc/grpc_service.proto). ``raw_input_contents`` become numpy
views over the message's bytes, with no copy; outputs always go back as ``raw_output_contents``,
as Triton sends them. The datatypes, shape checks and batching rules are codecs.v2's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..grpc import grpc_service_pb2 as pb
from ..types import InferRequest, InferResponse, Signature
from . import v2

# The typed contents field that carries each datatype (FP16 and BF16 travel only as raw bytes).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def parameter_value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def parameters_dict(parameters) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def _contents(tensor, dtype: np.dtype, where: str) -> np.ndarray:
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise InvalidInput(f"{where}: {tensor.datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if dtype.kind == "O":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    with np.errstate(over="ignore"):
        return np.array(values, dtype=dtype)


def decode_model_infer(request: pb.ModelInferRequest, signature: Signature,
                       model: str) -> tuple[InferRequest, v2.RequestedOutputs]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"expected {len(request.inputs)} raw_input_contents (one per input), got {len(raw)}")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}]"
        dtype = v2.DATATYPES.get(tensor.datatype)
        if dtype is None:
            raise InvalidInput(f"{where}: unknown datatype {tensor.datatype!r} (known: {', '.join(v2.DATATYPES)})")
        if tensor.name in arrays:
            raise InvalidInput(f"{where}: input '{tensor.name}' is given twice")
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(f"{where}: shape {list(shape)} has a negative dimension")
        v2.check_shape(shape, where)
        count = math.prod(shape)
        if raw:
            array = v2.binary_array(memoryview(raw[i]), dtype, count, tensor.name, where)
        else:
            array = _contents(tensor, dtype, where)
        if array.size != count:
            raise InvalidInput(f"{where}: input '{tensor.name}' has {array.size} elements, but shape {list(shape)} "
                               f"needs {count}")
        spec = v2.input_spec(tensor.name, signature, len(request.inputs))
        arrays[spec.name if spec else tensor.name] = v2.typed_for(array.reshape(shape), spec, tensor.name, model,
                                                                  tensor.datatype)
    parameters, _ = v2.protocol_parameters(parameters_dict(request.parameters))
    wanted = v2.RequestedOutputs(id=request.id or None)
    if request.outputs:
        wanted.names = [output.name for output in request.outputs]
        for i, output in enumerate(request.outputs):
            if parameter_value(output.parameters["class_count"]) if "class_count" in output.parameters else None:
                raise InvalidInput(f"outputs[{i}]: the classification extension (class_count) is not supported")
    return v2.build_request(arrays, signature, model, parameters), wanted


def encode_model_infer(response: InferResponse, wanted: v2.RequestedOutputs, model: str,
                       version: str) -> pb.ModelInferResponse:
    reply = pb.ModelInferResponse(model_name=model, model_version=version, id=wanted.id or "")
    for name, array in v2.select_outputs(response, wanted, model):
        reply.outputs.add(name=name, datatype=v2.datatype(array.dtype), shape=array.shape)
        if array.dtype.kind == "O":
            reply.raw_output_contents.append(v2.serialize_bytes(array))
        else:
            reply.raw_output_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return reply
