"""Vertex AI / TF Serving JSON: ``{"instances"}`` (row) or ``{"inputs"}`` (columnar) ⇄ tensors.

Row format: each instance is one batch item; a one-input model takes bare values, a model with
several inputs takes objects keyed by exactly the input names. Columnar: the value is the batch
itself. Replies: ``{"predictions": [...]}`` with one prediction per instance in order, or
``{"outputs": ...}``. Rules: ../shared/CONTRACTS.md §1 and §2.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson

from ..errors import InvalidInput, TooLarge
from ..native import native
from ..types import InferRequest, InferResponse, Signature, TensorSpec, one_tensor_key
from .json_scan import scan_json
from .tensors import check_dims, json_type, scalar_array, to_array

ROW, COLUMNAR = "row", "columnar"
_COLUMN_PATH = re.compile(r"^instances\[\*\]\.([^\[:]+)\[(\d+)\]")


@dataclass
class PredictBody:
    """The envelope of a predict body, before any tensor is built."""

    data: Any  # the instances list (row) or the inputs value (columnar)
    format: str
    parameters: dict[str, Any]
    signature_name: str | None


def parse_json(body: bytes | memoryview) -> Any:
    """orjson; TF Serving also takes the bare tokens NaN, Infinity, -Infinity and numbers too large
    for a double (they become ±inf), which orjson refuses: only then does the stdlib parser retry.
    A duplicate key in any object is refused (orjson would keep the last one silently), and so is a
    large body that would decode into far more memory than its own size."""
    if len(body) > OBJECTS_FREE_BYTES:
        _check_object_budget(body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raw = bytes(body)
        message = str(err)
        if b"NaN" in raw or b"Infinity" in raw or "number is infinity" in message:
            try:
                return _stdlib_loads(raw)
            except ValueError:
                pass
        raise InvalidInput(f"invalid JSON: {err}") from None
    if type(doc) is dict or type(doc) is list:
        _check_unique_keys(body, doc)
    return doc


# Parsed with orjson, every JSON value becomes a Python object: about 32 bytes for a number (the
# float and its slot in a list) that may take 2 bytes of text. A body past the first MiB whose
# values would take more than OBJECTS_MAX_RATIO times its size is refused before it is parsed;
# the native decoder, binary tensors (OIP's binary extension, application/x-npy) and gRPC build
# arrays without these objects.
OBJECTS_FREE_BYTES = 1024 * 1024
OBJECTS_MAX_RATIO = 3
_BYTES_PER_VALUE = 32
_COUNT_WINDOW = 1024 * 1024


def _check_object_budget(body: bytes | memoryview) -> None:
    data = np.frombuffer(body, dtype=np.uint8)
    values = 1
    for start in range(0, len(data), _COUNT_WINDOW):  # windows: no temporary the size of the body
        window = data[start:start + _COUNT_WINDOW]
        values += int(np.count_nonzero((window == 44) | (window == 91) | (window == 123)))  # , [ {
    estimate = values * _BYTES_PER_VALUE
    if estimate > OBJECTS_MAX_RATIO * len(body):
        raise TooLarge(f"a JSON body of {len(body)} bytes holding about {values} values would decode into about "
                       f"{estimate >> 20} MiB of objects, more than {OBJECTS_MAX_RATIO} times its size; send "
                       "fewer instances per request, or the tensors in binary (the v2 binary extension, "
                       "application/x-npy, or gRPC)")


_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Every key is a string followed by ':'; a string value holding '":' also matches (an over-count).
_SPACED_KEY_TOKEN = re.compile(rb'"[ \t\r\n]+:')
# The stdlib parser recurses (in C) once per level; below Python's recursion limit it cannot fail.
MAX_STDLIB_DEPTH = 512


def _stdlib_loads(raw: bytes) -> Any:
    """The stdlib parser, for the tokens orjson refuses; the key scan runs first, so that neither a
    duplicate key nor deep nesting reaches it."""
    scanned = scan_json(raw)
    if scanned is not None:
        duplicate, depth = scanned
        if depth > MAX_STDLIB_DEPTH:
            raise InvalidInput(f"invalid JSON: nested deeper than {MAX_STDLIB_DEPTH} levels")
        if duplicate is not None:
            raise InvalidInput(f"invalid JSON: duplicate key {duplicate!r} in an object")
    return json.loads(raw, parse_constant=_CONSTANTS.__getitem__)


def _count_keys(doc: Any) -> int:
    count, stack = 0, [doc]
    while stack:
        value = stack.pop()
        if type(value) is dict:
            count += len(value)
            value = value.values()
        kinds = set(map(type, value))  # in C: a list of numbers is passed over without a Python loop
        if dict in kinds or list in kinds:
            stack.extend(v for v in value if type(v) is dict or type(v) is list)
    return count


# Past this size the native scan (linear, in C, without the GIL) costs less than counting keys
# in the parsed document (a Python walk over every list and object).
_SCAN_AT_ONCE_BYTES = 4096


def _check_unique_keys(body: bytes | memoryview, doc: Any) -> None:
    """Cheap when there is nothing to find: the key tokens in the bytes are counted and compared
    with the keys orjson kept; only a mismatch (a duplicate, or '":' inside a string) pays for the
    exact scan, one linear pass (native, or its Python twin)."""
    if native is not None and len(body) > _SCAN_AT_ONCE_BYTES:
        duplicate = native.scan_json(body)
        if duplicate is not None and duplicate[0] is not None:
            raise InvalidInput(f"invalid JSON: duplicate key {duplicate[0]!r} in an object")
        return
    raw = body if type(body) is bytes else bytes(body)
    tokens = raw.count(b'":')  # in C, allocating nothing; a key spaced before its ':' is rare
    if _SPACED_KEY_TOKEN.search(raw) is not None:
        tokens += len(_SPACED_KEY_TOKEN.findall(raw))
    if tokens == 0 or (type(doc) is dict and tokens == len(doc)) or tokens == _count_keys(doc):
        return
    scanned = scan_json(body)
    if scanned is not None and scanned[0] is not None:
        raise InvalidInput(f"invalid JSON: duplicate key {scanned[0]!r} in an object")


def parse_predict_body(body: bytes | memoryview) -> PredictBody:
    return envelope(parse_json(body))


def envelope(doc: Any) -> PredictBody:
    """Check the top level of a predict body (the rules and messages of both paths)."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object with 'instances', got {json_type(doc)}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances == has_inputs:
        raise InvalidInput("request body must have exactly one of 'instances' (row format) "
                           "or 'inputs' (columnar format)")
    parameters = doc.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise InvalidInput(f"'parameters' must be an object, got {json_type(parameters)}")
    signature_name = doc.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise InvalidInput(f"'signature_name' must be a string, got {json_type(signature_name)}")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(f"'instances' must be a list, got {json_type(instances)}")
        if not instances:
            raise InvalidInput("'instances' must not be empty")
        return PredictBody(instances, ROW, parameters, signature_name)
    return PredictBody(doc["inputs"], COLUMNAR, parameters, signature_name)


_NATIVE_TARGETS = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int64): 3, np.dtype(np.int32): 4}


# Picks the signature a request's signature_name names (a TF Serving model has several); raises
# InvalidInput for a name the model does not have.
SignatureByName = Callable[[str], Signature]


def _native_plan(spec: TensorSpec) -> tuple | None:
    """How the native path decodes this input: ("b64",), ("numbers", target, inner shape), or None."""
    if spec.dtype is not None and spec.dtype.kind == "O" and spec.shape in (None, (-1,)):
        return ("b64",)
    target = 0 if spec.dtype is None else _NATIVE_TARGETS.get(spec.dtype)
    if target is None:
        return None
    return ("numbers", target, None if spec.shape is None else list(spec.shape[1:]))


def _fixed_key(spec: TensorSpec) -> tuple | None:
    """The batch key every natively decoded request of this input has (one array of the spec's
    dtype and per-instance shape), when the spec fixes both; else None (the scheduler computes it)."""
    if spec.dtype is None or spec.shape is None or any(d < 0 for d in spec.shape[1:]):
        return None
    return one_tensor_key(spec.name, spec.dtype, tuple(spec.shape[1:]), None)


# id(spec) → (spec, plan, fixed batch key); the spec keeps its id
_plans: dict[int, tuple[TensorSpec, tuple | None, tuple | None]] = {}


def decode_predict_request(body: bytes | memoryview, signature: Signature,
                           by_name: SignatureByName | None = None) -> tuple[InferRequest, str]:
    """Bytes → InferRequest whose inputs follow the signature (or the one ``by_name`` gives for the
    body's signature_name); also returns the format. One numeric (or base64) input in row format
    takes the C++ fast path; what it declines, the Python path decodes or names the error."""
    if native is None or len(signature.inputs) != 1:
        return decode_predict_request_py(body, signature, by_name)
    spec = signature.inputs[0]
    cached = _plans.get(id(spec))
    if cached is None or cached[0] is not spec:
        if len(_plans) > 1024:
            _plans.clear()
        cached = _plans[id(spec)] = (spec, _native_plan(spec), _fixed_key(spec))
    plan = cached[1]
    if plan is None:
        return decode_predict_request_py(body, signature, by_name)
    if plan[0] == "b64":
        decoded = _decode_b64_instances(body)
    else:
        decoded = native.decode_instances(body, plan[1], plan[2])
    if decoded is None:
        return decode_predict_request_py(body, signature, by_name)
    if len(decoded) == 3:  # regular numbers, in a shape the signature does not take
        return _wrong_shape(body, signature, by_name, spec, *decoded)
    array, spans = decoded
    if not spans:  # {"instances": [...]} alone, the usual body: nothing else to check
        request = InferRequest({spec.name: array}, array.shape[0])  # positional: cheaper per request
        request.batch_key = cached[2]
        return request, ROW
    if "inputs" in spans:
        return decode_predict_request_py(body, signature, by_name)
    try:
        doc = {key: parse_json(body[start:end]) for key, (start, end) in spans.items()}
    except InvalidInput:  # the Python path names the error where it is in the whole body
        return decode_predict_request_py(body, signature, by_name)
    doc["instances"] = _PLACEHOLDER
    parsed = envelope(doc)
    if by_name is not None and parsed.signature_name is not None:
        chosen = by_name(parsed.signature_name)
        if chosen != signature:  # typed by another signature: the Python path decodes it
            return decode_predict_request_py(body, chosen)
    request = InferRequest(inputs={spec.name: array}, batch_size=array.shape[0], parameters=parsed.parameters,
                           signature_name=parsed.signature_name)
    return request, ROW


_PLACEHOLDER = [None]  # stands in for the instances the native path already decoded


def _wrong_shape(body, signature: Signature, by_name: SignatureByName | None, spec: TensorSpec,
                 shape: tuple[int, ...], spans: dict, _flag) -> tuple[InferRequest, str]:
    """The Python path's answer for numbers in the wrong shape (the error check_dims names), when
    the rest of the body would not be refused first; built from the shape alone, so that a large
    body's numbers never become Python objects."""
    if "inputs" in spans:
        return decode_predict_request_py(body, signature, by_name)
    try:
        doc = {key: parse_json(body[start:end]) for key, (start, end) in spans.items()}
    except InvalidInput:
        return decode_predict_request_py(body, signature, by_name)
    doc["instances"] = _PLACEHOLDER
    parsed = envelope(doc)
    if by_name is not None and parsed.signature_name is not None and by_name(parsed.signature_name) != signature:
        return decode_predict_request_py(body, signature, by_name)
    check_dims(shape, spec, "instances")
    raise AssertionError(f"the native decoder flagged shape {shape} that {spec} takes")


def _decode_b64_instances(body: bytes | memoryview):
    """{"instances": [{"b64": ...}]}: the native parser finds each string, the SIMD decoder reads it
    straight from the request bytes. Anything unusual (no padding, a bad character) declines, and
    the Python path answers with the canonical result or error."""
    found = native.b64_instance_spans(body)
    if found is None:
        return None
    spans, others = found
    view = memoryview(body)
    values = np.empty(len(spans), dtype=object)
    try:
        for i, (start, end) in enumerate(spans):
            values[i] = _simd_b64decode(view[start:end])
    except ValueError:
        return None
    return values, others


try:
    import pybase64

    def _simd_b64decode(data) -> bytes:
        try:
            return pybase64.b64decode(data, validate=True)
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            raise ValueError("not canonical base64") from None
except ImportError:  # pragma: no cover - pybase64 is a core dependency
    def _simd_b64decode(data) -> bytes:
        return native.b64decode(data)


SCAN_IN_NUMPY_BYTES = 16 * 1024


def holds(raw: bytes, token: bytes) -> bool:
    """``token in raw``. On a large body, by numpy's vectorised compares, which release the GIL:
    ``in`` is one C call of about 1 ns a byte holding it, which the event loop would wait out
    while a codec thread scans (tests/adversarial/test_loop_stall.py)."""
    if len(raw) < SCAN_IN_NUMPY_BYTES:
        return token in raw
    data = np.frombuffer(raw, np.uint8)
    end = len(data) - len(token) + 1
    found = data[:end] == token[0]
    for i in range(1, len(token)):
        np.logical_and(found, data[i:end + i] == token[i], out=found)
    return bool(found.any())


def decode_predict_request_py(body: bytes | memoryview, signature: Signature,
                              by_name: SignatureByName | None = None) -> tuple[InferRequest, str]:
    """The pure-Python path: the reference the native fast path must agree with."""
    parsed = parse_predict_body(body)
    if by_name is not None and parsed.signature_name is not None:
        signature = by_name(parsed.signature_name)
    # Without a `true`/`false` token anywhere in the body no value can be a boolean (cheap and exact).
    raw = body if isinstance(body, bytes) else bytes(body)
    may_hold_bools = holds(raw, b"true") or holds(raw, b"false")
    if parsed.format == ROW:
        inputs = _row_inputs(parsed.data, signature.inputs, may_hold_bools)
        return InferRequest(inputs=inputs, batch_size=len(parsed.data), parameters=parsed.parameters,
                            signature_name=parsed.signature_name), ROW
    # Columnar (TF Serving's rules): each input is a whole tensor, with its own leading dimension
    # or none; the request runs alone and its outputs are returned as the model made them.
    inputs = _columnar_inputs(parsed.data, signature.inputs, may_hold_bools)
    return InferRequest(inputs=inputs, batch_size=1, parameters=parsed.parameters,
                        signature_name=parsed.signature_name, unbatched=True), COLUMNAR


def _row_inputs(instances: list, specs: tuple[TensorSpec, ...], bools: bool) -> dict[str, Any]:
    if len(specs) == 1:
        spec = specs[0]
        # A one-input model also takes instances written as {"<input name>": value}.
        if type(instances[0]) is dict and spec.name in instances[0] and len(instances[0]) == 1 and spec.dtype is not None:
            instances = [_named_value(inst, spec, i) for i, inst in enumerate(instances)]
        return {spec.name: to_array(instances, spec, "instances", bools)}
    names = [s.name for s in specs]
    columns: dict[str, list] = {n: [] for n in names}
    for i, inst in enumerate(instances):
        if type(inst) is not dict or "b64" in inst and len(inst) == 1:
            raise InvalidInput(f"instances[{i}]: this model has inputs {names}; each instance must be an "
                               f"object keyed by them, got {json_type(inst)}")
        for name in names:
            if name not in inst:
                raise InvalidInput(f"instances[{i}]: missing input '{name}'")
            columns[name].append(inst[name])
        if len(inst) != len(names):
            extra = sorted(set(inst) - set(names))
            raise InvalidInput(f"instances[{i}]: unknown input '{extra[0]}' (the model's inputs are {names})")
    try:
        return {s.name: to_array(columns[s.name], s, f"instances[*].{s.name}", bools) for s in specs}
    except InvalidInput as err:
        # The column walk names "instances[*].a[3][1]"; the client wrote "instances[3].a[1]".
        err.message = _COLUMN_PATH.sub(r"instances[\2].\1", err.message)
        err.args = (err.message,)
        raise


def _named_value(inst: Any, spec: TensorSpec, i: int) -> Any:
    if type(inst) is not dict or spec.name not in inst or len(inst) != 1:
        raise InvalidInput(f"instances[{i}]: expected an object with the single key '{spec.name}' "
                           "like the other instances")
    return inst[spec.name]


def _columnar_inputs(value: Any, specs: tuple[TensorSpec, ...], bools: bool) -> dict[str, Any]:
    if type(value) is dict and not ("b64" in value and len(value) == 1):
        names = [s.name for s in specs]
        for key in value:
            if key not in names:
                raise InvalidInput(f"inputs: unknown input '{key}' (the model's inputs are {names})")
        for name in names:
            if name not in value:
                raise InvalidInput(f"inputs: missing input '{name}'")
        return {s.name: _tensor(value[s.name], s, f"inputs.{s.name}", bools) for s in specs}
    if len(specs) != 1:
        raise InvalidInput(f"inputs: this model has inputs {[s.name for s in specs]}; "
                           "'inputs' must be an object keyed by them")
    return {specs[0].name: _tensor(value, specs[0], "inputs", bools)}


def _tensor(value: Any, spec: TensorSpec, path: str, bools: bool) -> Any:
    """One columnar input: a whole tensor of any rank, a bare value being rank 0."""
    if type(value) is list:
        array = to_array(value, spec, path, bools, check_shape=False)
    else:
        array = scalar_array(value, spec, path)
    if isinstance(array, np.ndarray) and spec.shape is not None:
        want = spec.shape
        if len(want) != array.ndim or any(w != -1 and w != g for w, g in zip(want, array.shape)):
            raise InvalidInput(f"{path}: input '{spec.name}' expects a tensor of shape {list(want)} (-1: any), "
                               f"got {list(array.shape)}")
    return array


# -- responses --------------------------------------------------------------------------------

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):  # dtypes orjson does not serialize natively (object, str, bytes)
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(obj).decode("ascii")}
    if hasattr(obj, "tolist"):  # other frameworks' tensors (a TorchServe handler's torch outputs)
        return obj.tolist()
    raise TypeError(f"cannot encode a {type(obj).__name__} as JSON")


def _as_b64(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        return [_as_b64(v) for v in value]
    return value


def _output_value(name: str, value: Any) -> Any:
    # TF Serving's convention: a string output whose alias ends in _bytes is sent as {"b64": ...}.
    return _as_b64(value) if name.endswith("_bytes") else value


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=_DUMPS_OPTIONS)


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fc" and not np.isfinite(value).all()
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _default(value)
    return value


def dumps_tf(obj: Any, outputs: dict[str, Any]) -> bytes:
    """Like TF Serving: non-finite floats are written as bare NaN / Infinity / -Infinity tokens
    (orjson would write null). Checked per output array, so finite replies keep orjson's speed."""
    for value in outputs.values():
        if _has_nonfinite(value):
            return json.dumps(_plain(obj), allow_nan=True, separators=(",", ":")).encode()
    return orjson.dumps(obj, default=_default, option=_DUMPS_OPTIONS)


def predictions_payload(response: InferResponse, batch_size: int) -> Any:
    """One prediction per instance: the single output's rows, or per-instance objects."""
    outputs = response.outputs
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return _output_value(name, value)
    items = [(name, _output_value(name, value)) for name, value in outputs.items()]
    return [{name: value[i] for name, value in items} for i in range(batch_size)]


def encode_predictions_each(response: InferResponse, batch_size: int) -> list[bytes]:
    """Each instance's prediction as its own JSON (batch prediction writes one line per instance);
    non-finite numbers are null, so that every line is JSON any reader parses."""
    outputs = response.outputs
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        if _is_labels(name, value) and value.ndim == 1:  # one C call for the batch: integers hold no comma
            if not batch_size:
                return []
            return orjson.dumps(np.ascontiguousarray(value), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        rows = _output_value(name, value)
    else:
        rows = predictions_payload(response, batch_size)
    if isinstance(rows, np.ndarray):
        rows = rows.tolist() if rows.dtype.kind != "O" else list(rows)
    if len(rows) != batch_size:
        raise ValueError(f"the model gave {len(rows)} predictions for {batch_size} instances")
    return [dumps(row) for row in rows]


def encode_predict_response(response: InferResponse, batch_size: int, fmt: str = ROW,
                            extra: dict[str, Any] | None = None, nonfinite: str = "tokens") -> bytes:
    """``nonfinite``: "tokens" writes NaN/Infinity bare (TF Serving, Vertex); "null" as JSON null."""
    outputs = response.outputs
    if fmt == ROW and len(outputs) == 1:
        for name, value in outputs.items():
            if _is_labels(name, value):
                return _labels_body(value, extra)
    if fmt == COLUMNAR:
        if len(outputs) == 1:
            name, value = next(iter(outputs.items()))
            doc: dict[str, Any] = {"outputs": _output_value(name, value)}
        else:
            doc = {"outputs": {name: _output_value(name, value) for name, value in outputs.items()}}
    else:
        doc = {"predictions": predictions_payload(response, batch_size)}
    if extra:
        doc.update(extra)
    return dumps_tf(doc, response.outputs) if nonfinite == "tokens" else dumps(doc)


def encode_predict_responses(response: InferResponse, counts: list[int], fmt: str = ROW,
                             extra: dict[str, Any] | None = None) -> list[bytes]:
    """A batch's response → each request's body (``counts[i]`` rows for request i)."""
    if len(counts) == 1:
        return [encode_predict_response(response, counts[0], fmt, extra)]
    outputs = response.outputs
    if fmt == ROW and len(outputs) == 1:
        for name, value in outputs.items():
            if _is_labels(name, value):
                # One conversion to Python numbers for the batch; each reply is its rows' slice
                # (orjson costs more per small array than this: 0.7 against 0.4 µs a reply).
                labels = value.tolist()
                bodies = []
                offset = 0
                for count in counts:
                    end = offset + count
                    bodies.append(_labels_body(labels[offset:end], extra))
                    offset = end
                return bodies
    return [encode_predict_response(part, count, fmt, extra) for part, count in zip(response.split(counts), counts)]


def _is_labels(name: str, value: Any) -> bool:
    """The usual reply: one array of labels or counts, which cannot hold a non-finite number."""
    return type(value) is np.ndarray and value.dtype.kind in "iub" and not name.endswith("_bytes")


def _labels_body(rows: Any, extra: dict[str, Any] | None) -> bytes:
    """{"predictions": rows} plus ``extra``; ``rows`` is such an array, or its rows as Python numbers."""
    doc = {"predictions": rows}
    if extra:
        doc.update(extra)
    return orjson.dumps(doc, default=_default, option=_DUMPS_OPTIONS)


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})
