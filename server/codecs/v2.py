"""The Open Inference Protocol v2 (KServe v2, Triton) over REST: infer requests and responses as
JSON, with the binary tensor data extension in both directions (../shared/CONTRACTS.md §4).

A request is a JSON header, optionally followed by raw little-endian row-major tensors in input
order (``Inference-Header-Content-Length`` gives the header's length; each binary input says its
``binary_data_size``). A binary input becomes a numpy view over the request bytes, with no copy.
BYTES elements are a 4-byte little-endian length, then the bytes. Outputs go back binary when the
request asks (``binary_data_output``, or an output's ``binary_data``), JSON otherwise.
Pure functions over bytes: the gRPC front-end shares the datatype table and the checks.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..types import InferRequest, InferResponse, Signature, TensorSpec
from .tensors import MAX_RANK, json_type
from .vertex_json import parse_json

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
try:  # bfloat16 has no numpy dtype of its own; ml_dtypes (TensorFlow's and JAX's) provides one
    import ml_dtypes

    DATATYPES["BF16"] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - BF16 inputs are then refused by name
    pass
_NAMES = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}

# Request parameters that belong to the protocol, not the model: taken out so they do not split batches.
_PROTOCOL_PARAMETERS = ("binary_data_output", "priority", "sequence_id", "sequence_start", "sequence_end")


def datatype(dtype: np.dtype | None) -> str:
    """The v2 datatype of a numpy dtype (BYTES for strings, bytes and Python objects)."""
    if dtype is None or dtype.kind in "OSU":
        return "BYTES"
    return _NAMES.get(dtype) or _NAMES.get(dtype.newbyteorder("=")) or "BYTES"


def dims(shape: tuple[int, ...] | None) -> list[int]:
    return [-1] if shape is None else [int(d) for d in shape]


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype(spec.dtype), "shape": dims(spec.shape)}


@dataclass(slots=True)
class RequestedOutputs:
    """What the request asked of the reply: its id, which outputs (None: all) and which go binary."""

    id: str | None = None
    names: list[str] | None = None
    binary: dict[str, bool] = field(default_factory=dict)  # per output's own binary_data
    binary_default: bool = False  # binary_data_output: outputs that do not say go binary

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _fail(message: str) -> InvalidInput:
    return InvalidInput(message)


def _shown(value: Any) -> str:
    """A client's value as an error message quotes it: short, and never an error of its own (orjson
    refuses integers past 64 bits and nesting past 255 levels)."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Past this many elements (zero-sized dimensions counted as one) no array can be made: numpy
# refuses even an empty one whose other dimensions overflow its size arithmetic.
MAX_ELEMENTS = 2**48


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if type(value) is not list or not all(type(d) is int and d >= 0 for d in value):
        raise _fail(f"{where}: 'shape' must be a list of non-negative integers, got {_shown(value)}")
    return check_shape(tuple(value), where)


def check_shape(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Non-negative dimensions (checked by the caller's wire format), at most MAX_RANK of them,
    describing an array numpy can make."""
    if len(shape) > MAX_RANK:
        raise _fail(f"{where}: shape has {len(shape)} dimensions; a tensor has at most {MAX_RANK}")
    if math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:
        raise _fail(f"{where}: shape {_shown(list(shape))} is larger than any tensor this server takes")
    return shape


def _flatten_bytes(data: Any, where: str) -> list[bytes]:
    out: list[bytes] = []
    stack = [data]
    while stack:
        value = stack.pop()
        if type(value) is list:
            stack.extend(reversed(value))
        elif type(value) is str:
            out.append(value.encode("utf-8"))
        else:
            raise _fail(f"{where}: BYTES data must hold strings, got {type(value).__name__}")
    return out


def _json_array(data: Any, dtype: np.dtype, name: str, where: str) -> np.ndarray:
    if dtype.kind == "O":
        values = _flatten_bytes(data, where)
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise _fail(f"{where}: 'data' must be a flat or nested list of numbers") from None
    kind = array.dtype.kind
    wanted = dtype.kind
    ok = (kind == "b" if wanted == "b" else kind in "iu" if wanted in "iu" else kind in "iuf")
    if not ok and wanted in "iu" and kind in "fO":  # integers past int64 (UINT64's upper half) mixed with others
        exact = _exact_integers(data, dtype)
        if exact is not None:
            return exact
    if array.size and not ok:
        kinds = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}
        raise _fail(f"{where}: input '{name}' is {datatype(dtype)}, so 'data' must hold {kinds.get(wanted, 'numbers')}"
                    f" (got {'a ragged or mixed list' if kind == 'O' else array.dtype.name + ' values'})")
    if kind in "iu" and wanted in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise _fail(f"{where}: a value of input '{name}' is out of range for {datatype(dtype)}")
    with np.errstate(over="ignore"):
        return array.astype(dtype, copy=False).ravel()


def _exact_integers(data: Any, dtype: np.dtype) -> np.ndarray | None:
    """The values as ``dtype`` when every one is a Python int in its range; else None."""
    try:
        values = np.asarray(data, dtype=object).ravel().tolist()
    except (ValueError, TypeError):
        return None
    if not all(type(v) is int for v in values):
        return None
    info = np.iinfo(dtype)
    if values and (min(values) < info.min or max(values) > info.max):
        return None
    return np.array(values, dtype=dtype)


def binary_array(view: memoryview, dtype: np.dtype, count: int, name: str, where: str) -> np.ndarray:
    if dtype.kind == "O":
        return deserialize_bytes(view, where)
    if len(view) != count * dtype.itemsize:
        raise _fail(f"{where}: input '{name}' has {len(view)} bytes of binary data; shape and {datatype(dtype)} "
                    f"need {count * dtype.itemsize}")
    return np.frombuffer(view, dtype=dtype.newbyteorder("<"), count=count)


def deserialize_bytes(view: memoryview | bytes, where: str = "BYTES data") -> np.ndarray:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    values = []
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 4:
            raise _fail(f"{where}: a BYTES element's 4-byte length is cut off at byte {offset}")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if length > end - offset:
            raise _fail(f"{where}: a BYTES element of {length} bytes runs past the data's end")
        values.append(bytes(view[offset:offset + length]))
        offset += length
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def serialize_bytes(array: np.ndarray) -> bytes:
    parts = []
    for value in array.ravel():
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif not isinstance(value, (bytes, bytearray)):
            value = str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(value)))
        parts.append(value)
    return b"".join(parts)


def typed_for(array: np.ndarray, spec: TensorSpec | None, name: str, model: str, sent: str) -> np.ndarray:
    """The input as the model's signature types it: same-kind casts (FP32 → FP64, INT32 → INT64)
    are made; others are refused, naming both datatypes."""
    if spec is None or spec.dtype is None or array.dtype == spec.dtype:
        pass
    elif spec.dtype.kind == "O" or array.dtype.kind == "O":
        if spec.dtype.kind != array.dtype.kind:
            raise _fail(f"input '{name}' of model '{model}' is {datatype(spec.dtype)}, got {sent}")
    elif np.can_cast(array.dtype, spec.dtype, "same_kind"):
        array = array.astype(spec.dtype)
    else:
        raise _fail(f"input '{name}' of model '{model}' is {datatype(spec.dtype)}, got {sent}")
    if spec is not None and spec.shape is not None:
        want = spec.shape
        if len(want) != array.ndim or any(w != -1 and w != g for w, g in zip(want, array.shape)):
            raise _fail(f"unexpected shape for input '{name}' for model '{model}': expected {dims(want)}, "
                        f"got {list(array.shape)}")
    return array


def input_spec(name: str, signature: Signature, sent: int) -> TensorSpec | None:
    """The signature's input a request's input is for: by name; a one-input model also takes a
    request's one input under another name (as MLServer and KServe do for scikit-learn models)."""
    for spec in signature.inputs:
        if spec.name == name:
            return spec
    if sent == 1 and len(signature.inputs) == 1:
        return signature.inputs[0]
    return None


def build_request(arrays: dict[str, np.ndarray], signature: Signature, model: str,
                  parameters: dict[str, Any]) -> InferRequest:
    """Named, typed arrays → the InferRequest the scheduler batches. Inputs that share a leading
    dimension are a batch of that many instances; otherwise the request runs alone."""
    names = [s.name for s in signature.inputs]
    unknown = [n for n in arrays if n not in names]
    if unknown:
        raise _fail(f"unexpected inference input '{unknown[0]}' for model '{model}' (its inputs are {names})")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise _fail(f"expected {len(names)} inputs but got {len(arrays)} inputs for model '{model}': "
                    f"missing {missing}")
    leading = {a.shape[0] if a.ndim else None for a in arrays.values()}
    batched = len(leading) == 1 and None not in leading
    return InferRequest(inputs=arrays, batch_size=leading.pop() if batched else 1, parameters=parameters,
                        unbatched=not batched)


def protocol_parameters(parameters: Any, where: str = "parameters") -> tuple[dict[str, Any], bool]:
    """The request's parameters for the model, and binary_data_output. Triton's ``timeout`` is in
    microseconds; the data plane's is in seconds."""
    if parameters is None:
        return {}, False
    if type(parameters) is not dict:
        raise _fail(f"'{where}' must be an object")
    model_parameters = dict(parameters)
    binary = bool(model_parameters.pop("binary_data_output", False))
    if model_parameters.get("sequence_id") not in (None, 0, ""):
        raise _fail("sequence batching (sequence_id) is not supported by this server")
    for key in _PROTOCOL_PARAMETERS:
        model_parameters.pop(key, None)
    if "timeout" in model_parameters:
        micros = model_parameters["timeout"]
        if type(micros) not in (int, float) or micros <= 0:
            raise _fail(f"'timeout' must be a positive number of microseconds, got {micros!r}")
        try:
            model_parameters["timeout"] = micros / 1e6
        except OverflowError:  # more microseconds than a double holds: no limit of its own
            model_parameters["timeout"] = math.inf
    return model_parameters, binary


def requested_outputs(doc_outputs: Any, binary_default: bool, request_id: Any) -> RequestedOutputs:
    if request_id is not None and type(request_id) not in (str, int, float):  # a number is taken as its text
        raise _fail(f"'id' must be a string, got {json_type(request_id)}")
    wanted = RequestedOutputs(id=None if request_id is None else str(request_id), binary_default=binary_default)
    if doc_outputs is None:
        return wanted
    if type(doc_outputs) is not list:
        raise _fail("'outputs' must be a list")
    wanted.names = []
    for i, output in enumerate(doc_outputs):
        if type(output) is not dict or type(output.get("name")) is not str:
            raise _fail(f"outputs[{i}] must be an object with a 'name'")
        wanted.names.append(output["name"])
        params = output.get("parameters") or {}
        if type(params) is not dict:
            raise _fail(f"outputs[{i}].parameters must be an object")
        if params.get("class_count"):
            raise _fail(f"outputs[{i}]: the classification extension (class_count) is not supported")
        if "binary_data" in params:
            wanted.binary[output["name"]] = bool(params["binary_data"])
    return wanted


def decode_infer_request(body: bytes | memoryview, header_length: int | None, signature: Signature,
                         model: str) -> tuple[InferRequest, RequestedOutputs]:
    """An infer request's bytes → the InferRequest (typed by the signature) and what the reply must hold."""
    view = memoryview(body)
    if header_length is not None:
        if not 0 < header_length <= len(view):
            raise _fail(f"Inference-Header-Content-Length is {header_length}, but the body has {len(view)} bytes")
        header, binary = view[:header_length], view[header_length:]
    else:
        header, binary = view, view[len(view):]
    doc = parse_json(header)
    if type(doc) is not dict:
        raise _fail("the infer request must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        raise _fail("the infer request must have a non-empty 'inputs' list")
    parameters, binary_default = protocol_parameters(doc.get("parameters"))
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if type(item) is not dict:
            raise _fail(f"{where} must be an object")
        name, type_name = item.get("name"), item.get("datatype")
        if type(name) is not str:
            raise _fail(f"{where}: 'name' must be a string")
        if name in arrays:
            raise _fail(f"{where}: input '{name}' is given twice")
        dtype = DATATYPES.get(type_name) if type(type_name) is str else None
        if dtype is None:
            raise _fail(f"{where}: unknown datatype {type_name!r} (known: {', '.join(DATATYPES)})")
        shape = _shape(item.get("shape"), where)
        count = math.prod(shape)
        params = item.get("parameters") or {}
        if type(params) is not dict:
            raise _fail(f"{where}.parameters must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise _fail(f"{where}: binary_data_size {size!r} does not fit the {len(binary) - offset} binary "
                            "bytes left in the body")
            array = binary_array(binary[offset:offset + size], dtype, count, name, where)
            offset += size
        elif "data" in item:
            array = _json_array(item["data"], dtype, name, where)
        else:
            raise _fail(f"{where}: input '{name}' has neither 'data' nor parameters.binary_data_size")
        if array.size != count:
            raise _fail(f"{where}: input '{name}' has {array.size} elements, but shape {list(shape)} needs {count}")
        spec = input_spec(name, signature, len(inputs))
        arrays[spec.name if spec else name] = typed_for(array.reshape(shape), spec, name, model, type_name)
    if offset != len(binary):
        raise _fail(f"the body has {len(binary) - offset} bytes after the inputs' binary data")
    return (build_request(arrays, signature, model, parameters),
            requested_outputs(doc.get("outputs"), binary_default, doc.get("id")))


def output_array(value: Any) -> np.ndarray:
    """A handler's output as an array (lists of Python objects become object arrays)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy"):  # a framework tensor
        return np.asarray(value.numpy())
    array = np.asarray(value)
    if array.dtype.kind in "US":
        array = array.astype(object)
    return array


def select_outputs(response: InferResponse, wanted: RequestedOutputs, model: str) -> list[tuple[str, np.ndarray]]:
    outputs = response.outputs
    if wanted.names is None:
        return [(name, output_array(value)) for name, value in outputs.items()]
    missing = [n for n in wanted.names if n not in outputs]
    if missing:
        raise _fail(f"unexpected inference output '{missing[0]}' for model '{model}' (its outputs are {list(outputs)})")
    return [(name, output_array(outputs[name])) for name in wanted.names]


def _json_data(array: np.ndarray) -> list:
    if array.dtype.kind == "O" or array.dtype.kind in "SU":
        out = []
        for value in array.ravel():
            if isinstance(value, (bytes, bytearray)):
                value = bytes(value).decode("utf-8", errors="replace")
            out.append(value if isinstance(value, str) else str(value))
        return out
    if array.dtype == DATATYPES.get("BF16"):
        array = array.astype(np.float32)
    return array.ravel().tolist()


def encode_infer_response(response: InferResponse, wanted: RequestedOutputs, model: str,
                          version: str) -> tuple[bytes, int | None]:
    """The reply's bytes, and the JSON header's length when binary outputs follow it (None: all JSON)."""
    outputs = []
    chunks: list[bytes | memoryview] = []
    for name, array in select_outputs(response, wanted, model):
        entry: dict[str, Any] = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if wanted.is_binary(name) or entry["datatype"] == "BF16":
            if array.dtype.kind == "O":
                data = serialize_bytes(array)
            else:
                data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).data.cast("B")
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = _json_data(array)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if wanted.id is not None:
        doc["id"] = wanted.id
    header = orjson.dumps(doc)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
