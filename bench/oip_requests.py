"""Requests in the Open Inference Protocol v2 for the load generators: JSON, the binary tensor
extension, and gRPC ModelInferRequest bytes, from a model's metadata or from given arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64}


@dataclass
class Tensor:
    name: str
    datatype: str
    array: np.ndarray  # BYTES: an object array of bytes


def generated(metadata: dict, rows: int, seed: int = 0) -> list[Tensor]:
    """Random inputs that fit a model's v2 metadata: -1 in the first dimension is ``rows``, elsewhere 1."""
    rng = np.random.default_rng(seed)
    tensors = []
    for spec in metadata.get("inputs") or []:
        shape = [int(d) for d in spec["shape"]]
        shape = [(rows if i == 0 else 1) if d < 0 else d for i, d in enumerate(shape)]
        datatype = spec["datatype"]
        if datatype == "BYTES":
            array = np.array([b"text"] * int(np.prod(shape)), dtype=object).reshape(shape)
        elif datatype == "BOOL":
            array = rng.random(shape) < 0.5
        elif datatype.startswith(("INT", "UINT")):
            array = rng.integers(0, 10, shape).astype(_NUMPY[datatype])
        else:
            array = rng.uniform(-1, 1, shape).astype(_NUMPY.get(datatype, np.float32))
        tensors.append(Tensor(spec["name"], datatype, array))
    if not tensors:
        raise ValueError("the model's metadata lists no inputs")
    return tensors


def _bytes_elements(array: np.ndarray) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in array.ravel())


def _raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return _bytes_elements(tensor.array)
    return np.ascontiguousarray(tensor.array).astype(tensor.array.dtype.newbyteorder("<")).tobytes()


def json_body(tensors: list[Tensor]) -> bytes:
    inputs = []
    for t in tensors:
        data = [v.decode() for v in t.array.ravel()] if t.datatype == "BYTES" else t.array.ravel().tolist()
        inputs.append({"name": t.name, "shape": list(t.array.shape), "datatype": t.datatype, "data": data})
    return json.dumps({"inputs": inputs}).encode()


def binary_body(tensors: list[Tensor], binary_outputs: bool = True) -> tuple[bytes, dict[str, str]]:
    """The JSON header, then every input's raw bytes; and the header-length header."""
    chunks = [_raw(t) for t in tensors]
    doc: dict = {"inputs": [{"name": t.name, "shape": list(t.array.shape), "datatype": t.datatype,
                             "parameters": {"binary_data_size": len(c)}} for t, c in zip(tensors, chunks)]}
    if binary_outputs:
        doc["parameters"] = {"binary_data_output": True}
    header = json.dumps(doc).encode()
    # Servers that parse the body by its media type (KServe) take the binary form as octet-stream.
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"}


def grpc_request(model: str, tensors: list[Tensor]) -> bytes:
    """A serialized ModelInferRequest with raw_input_contents (tritonclient's form)."""
    from hyperserve.server.grpc import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    for t in tensors:
        request.inputs.add(name=t.name, datatype=t.datatype, shape=t.array.shape)
        request.raw_input_contents.append(_raw(t))
    return request.SerializeToString()


def http_metadata(base_url: str, model: str) -> dict:
    import httpx

    answer = httpx.get(f"{base_url}/v2/models/{model}", timeout=30)
    answer.raise_for_status()
    return answer.json()


def grpc_metadata(address: str, model: str) -> dict:
    import grpc
    from google.protobuf import json_format

    from hyperserve.server.grpc import grpc_service_pb2 as pb

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata",
                                   request_serializer=pb.ModelMetadataRequest.SerializeToString,
                                   response_deserializer=pb.ModelMetadataResponse.FromString)
        reply = call(pb.ModelMetadataRequest(name=model), timeout=30)
    return json_format.MessageToDict(reply, preserving_proto_field_name=True)
