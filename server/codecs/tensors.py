"""JSON values → typed arrays, driven by a TensorSpec (the pure-Python reference path).

The fast path is numpy's own conversion of a regular nested list of numbers; anything it does
not take cleanly (strings, bools among numbers, nulls, ragged lists, ``{"b64": ...}``) goes
through ``_Walker``, which either builds the array or names the first offending path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..types import TensorSpec
from .b64 import b64decode

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
MAX_RANK = 64  # numpy's most dimensions
_FLOAT_MAX = int(np.finfo(np.float64).max)


def _as_float(value: int) -> float:
    """An integer as a double; past the double range, ±inf (TF Serving's rule for numbers too large)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _short(value: int) -> str:
    """An integer as an error message names it: hundreds of digits are cut to their ends."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text.lstrip('-'))} digits)"
_NAN_TOKENS = {"NaN": math.nan, "nan": math.nan}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_b64(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and "b64" in value


def decode_b64_value(value: dict, path) -> bytes:
    """``path`` is a string or a callable giving one: it is only needed when the value is bad."""
    data = value["b64"]
    try:
        if not isinstance(data, str):
            raise ValueError(f"expected a base64 string, got {json_type(data)}")
        return b64decode(data)
    except ValueError as err:
        where = path() if callable(path) else path
        raise InvalidInput(f"{where}.b64: {err}") from None


def _kind(dtype: np.dtype | None) -> str:
    """'f' float, 'i' signed, 'u' unsigned, 'b' bool, 'S' bytes/str, None infer."""
    if dtype is None:
        return "?"
    if dtype.kind in "fiub":
        return dtype.kind
    return "S"


class _Walker:
    """Walks nested lists once: checks leaf types against the target kind and the shape.

    The JSON path of the current element (``instances[3][1]``) is kept as a stack of indices
    and only formatted when an error names it.
    """

    def __init__(self, kind: str, nan_strings: bool, base: str):
        self.kind = kind
        self.nan_strings = nan_strings
        self.base = base
        self.trail: list[int] = []
        self.shape: list[int] | None = None
        self.seen: set[str] = set()  # leaf kinds met, for inference

    def path(self) -> str:
        return self.base + "".join(f"[{i}]" for i in self.trail)

    def walk(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, list):
            if depth >= MAX_RANK:  # also bounds this recursion: never deeper than a tensor can be
                raise InvalidInput(f"{self.path()}: nested deeper than {MAX_RANK} levels "
                                   f"(a tensor has at most {MAX_RANK} dimensions)")
            self._check_dim(depth, len(value))
            trail = self.trail
            trail.append(0)
            out = []
            for i, item in enumerate(value):
                trail[-1] = i
                out.append(self.walk(item, depth + 1))
            trail.pop()
            return out
        self._check_dim(depth, None)
        return self.leaf(value)

    def _check_dim(self, depth: int, length: int | None):
        if self.shape is None:  # the first path to a leaf fixes the shape
            self.shape = []
        if depth < len(self.shape):
            expected = self.shape[depth]
            if expected == -1:  # -1 marks "a leaf lives here"
                if length is not None:
                    raise InvalidInput(f"{self.path()}: expected a scalar, got an array "
                                       "(instances must all have the same shape)")
            elif length is None:
                raise InvalidInput(f"{self.path()}: expected an array of {expected} elements, got a scalar")
            elif length != expected:
                raise InvalidInput(f"{self.path()}: expected an array of {expected} elements, got {length} "
                                   "(instances must all have the same shape)")
        else:
            self.shape.append(-1 if length is None else length)

    def leaf(self, value: Any) -> Any:
        kind = self.kind
        if value is None:
            raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got null")
        if is_b64(value):
            if kind not in "S?":
                raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got a {{\"b64\": ...}} object")
            self.seen.add("bytes")
            return decode_b64_value(value, self.path)
        if isinstance(value, bool):
            if kind in "b?":
                self.seen.add("bool")
                return value
            raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got boolean")
        if isinstance(value, int):
            if kind in "fiu?":
                if kind in "iu?" and not (_INT64_MIN <= value <= _INT64_MAX) and not (kind == "u" and 0 <= value < 2**64):
                    if kind == "?":
                        self.seen.add("float")
                        return _as_float(value)
                    raise InvalidInput(f"{self.path()}: integer {_short(value)} is out of range")
                if kind == "f" and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
                    return _as_float(value)  # beyond a double: ±inf, as a float literal would be
                if kind == "u" and value < 0:
                    raise InvalidInput(f"{self.path()}: expected an unsigned integer, got {value}")
                self.seen.add("int")
                return value
            raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got number")
        if isinstance(value, float):
            if kind in "f?":
                self.seen.add("float")
                return value
            if kind in "iu":
                raise InvalidInput(f"{self.path()}: expected an integer, got {value!r}")
            raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got number")
        if isinstance(value, str):
            if kind in "S?":
                self.seen.add("str")
                return value
            if kind == "f" and self.nan_strings and value in _NAN_TOKENS:
                self.seen.add("float")
                return _NAN_TOKENS[value]
            raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got string")
        if kind == "?":
            self.seen.add("object")
            return value
        raise InvalidInput(f"{self.path()}: expected {_EXPECTED[kind]}, got object")


_EXPECTED = {
    "f": "a number",
    "i": "an integer",
    "u": "an unsigned integer",
    "b": "a boolean",
    "S": "a string or {\"b64\": ...}",
    "?": "a value",
}


_NUMERIC_LEAVES = (int, float, bool)


def _fast(value: Any, spec: TensorSpec, may_hold_bools: bool) -> np.ndarray | None:
    """numpy's conversion when it cannot have bent a rule; None sends the value to the walker.

    numpy turns booleans among numbers into 0/1 silently, so a typed numeric input only takes
    this path when the body cannot hold a boolean at all (``may_hold_bools`` is False).
    """
    target = _kind(spec.dtype)
    if target in "fiub":
        first = value
        for _ in range(MAX_RANK + 1):
            if type(first) is not list or not first:
                break
            first = first[0]
        if type(first) not in _NUMERIC_LEAVES:  # numpy would build a string or object array for nothing
            return None
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None
    kind = arr.dtype.kind
    if target == "?":
        return arr if kind in "fib" else None
    if may_hold_bools and target in "fiu":
        return None
    if kind == "b":
        return arr if target == "b" else None
    if kind == "i":
        if target == "f":
            return _cast(arr, spec.dtype)
        if target in "iu":
            if target == "u" and arr.size and arr.min() < 0:
                return None
            return _cast_int(arr, spec.dtype)
        return None
    if kind == "f" and target == "f":
        return _cast(arr, spec.dtype)
    return None


def _cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore"):  # float overflow becomes ±inf, as TF Serving does
        return arr.astype(dtype, copy=False)


def _cast_int(arr: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        return None
    return arr.astype(dtype, copy=False)


def to_array(value: Any, spec: TensorSpec, path: str, may_hold_bools: bool = True, check_shape: bool = True) -> Any:
    """Convert one input's batch (a list whose items are instances) to an array.

    Returns a Python list instead when the spec has no dtype and the values are not a tensor
    (mixed objects), so handlers that take Python objects still get them.
    """
    arr = _fast(value, spec, may_hold_bools)
    if arr is None:
        arr = _slow(value, spec, path)
    if check_shape and isinstance(arr, np.ndarray) and spec.shape is not None:
        _check_shape(arr, spec, path)
    return arr


def scalar_array(value: Any, spec: TensorSpec, path: str) -> np.ndarray:
    """A bare JSON value as a rank-0 array, with the same type rules as the values in a list."""
    walker = _Walker(_kind(spec.dtype), spec.nan_strings, path)
    leaf = walker.leaf(value)
    if spec.dtype is None:
        return np.asarray(leaf) if walker.seen & {"int", "float", "bool", "str"} else np.array(leaf, dtype=object)
    if spec.dtype.kind in "OSU":
        return np.array(leaf, dtype=object)
    if spec.dtype.kind in "iu":
        info = np.iinfo(spec.dtype)
        if not info.min <= leaf <= info.max:
            raise InvalidInput(f"{path}: integer {leaf} is out of range for {spec.dtype}")
    with np.errstate(over="ignore"):
        return np.asarray(leaf, dtype=spec.dtype)


def _slow(value: Any, spec: TensorSpec, path: str) -> Any:
    kind = _kind(spec.dtype)
    walker = _Walker(kind, spec.nan_strings, path)
    try:
        cleaned = walker.walk(value)
    except InvalidInput:
        if kind == "?" and spec.shape is None:
            return value  # no tensor is required: the handler takes Python objects
        raise
    if kind == "?":
        seen = walker.seen
        if seen <= {"int", "float"} or seen <= {"bool"}:
            return np.asarray(cleaned)
        if seen == {"str"}:
            return np.asarray(cleaned)
        if seen == {"bytes"}:
            return _object_array(cleaned, walker.shape)
        return value if seen != set() else np.asarray(cleaned)
    if kind == "S":
        return _object_array(cleaned, walker.shape)
    if kind in "iu":
        # The walker kept every integer within int64 (uint64 for unsigned inputs); numpy checks
        # the input's own range in one vectorised pass.
        arr = np.asarray(cleaned, dtype=np.uint64 if kind == "u" else np.int64)
        info = np.iinfo(spec.dtype)
        outside = (arr < info.min) | (arr > info.max)
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise InvalidInput(f"{path}{''.join(f'[{i}]' for i in where)}: integer {arr[where]} "
                               f"is out of range for {spec.dtype}")
        return arr.astype(spec.dtype)
    with np.errstate(over="ignore"):
        return np.asarray(cleaned, dtype=spec.dtype)


def _object_array(values: Any, shape: list[int] | None) -> np.ndarray:
    dims = [d for d in (shape or []) if d != -1]
    arr = np.empty(len(values) if not dims else tuple(dims), dtype=object)
    if not dims:
        arr[:] = values
        return arr
    _fill(arr, values)
    return arr


def _fill(arr: np.ndarray, values: list):
    if arr.ndim == 1:
        for i, v in enumerate(values):
            arr[i] = v
    else:
        for i, v in enumerate(values):
            _fill(arr[i], v)


def _check_shape(arr: np.ndarray, spec: TensorSpec, path: str):
    check_dims(arr.shape, spec, path)


def check_dims(shape: tuple[int, ...], spec: TensorSpec, path: str):
    """An InvalidInput unless a batch of ``shape`` fits the spec's per-instance shape."""
    want = spec.shape
    if len(want) != len(shape) or any(w != -1 and w != g for w, g in zip(want[1:], shape[1:])):
        raise InvalidInput(
            f"{path}: input '{spec.name}' expects each instance to have shape {list(want[1:])}, "
            f"got {list(shape[1:])}")
