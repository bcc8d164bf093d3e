"""rawPredict bodies: ``application/x-npy`` and ``application/octet-stream`` become arrays that are
views over the request bytes (no copy); any other media type reaches the handler as bytes."""

from __future__ import annotations

import io
import math

import numpy as np

from ..errors import InvalidInput
from ..types import InferRequest, RawBody, Signature, TensorSpec

NPY = "application/x-npy"
OCTET_STREAM = "application/octet-stream"


def decode_npy(body: bytes) -> np.ndarray:
    """Parse an .npy body into a read-only view over ``body``; pickled object arrays are refused."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as err:
        raise InvalidInput(f"invalid application/x-npy body: {err}") from None
    if dtype.hasobject:
        raise InvalidInput("invalid application/x-npy body: object arrays (pickled data) are not accepted")
    count = math.prod(shape)
    offset = stream.tell()
    if len(body) - offset != count * dtype.itemsize:
        raise InvalidInput(f"invalid application/x-npy body: header promises {count * dtype.itemsize} data "
                           f"bytes for shape {list(shape)}, body has {len(body) - offset}")
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _single_input(signature: Signature) -> TensorSpec | None:
    return signature.inputs[0] if len(signature.inputs) == 1 else None


def decode_raw_request(content_type: str, body: bytes, signature: Signature) -> InferRequest:
    spec = _single_input(signature)
    if content_type == NPY:
        arr = decode_npy(body)
        if spec is None:
            raise InvalidInput(f"application/x-npy carries one array, but this model has inputs "
                               f"{[s.name for s in signature.inputs]}")
        return _tensor_request(arr, spec)
    if content_type == OCTET_STREAM and spec is not None and _fixed_inner(spec):
        dtype = spec.dtype
        inner = spec.shape[1:]
        row_bytes = math.prod(inner) * dtype.itemsize
        if row_bytes == 0 or len(body) % row_bytes or not body:
            raise InvalidInput(f"application/octet-stream body of {len(body)} bytes is not a whole number of "
                               f"{dtype} rows of shape {list(inner)} ({row_bytes} bytes each)")
        arr = np.frombuffer(body, dtype=dtype.newbyteorder("<")).reshape(-1, *inner)
        return InferRequest(inputs={spec.name: arr}, batch_size=arr.shape[0])
    return InferRequest(inputs={}, batch_size=1, raw=RawBody(content_type, body))


def _fixed_inner(spec: TensorSpec) -> bool:
    return (spec.dtype is not None and spec.dtype.kind in "fiub" and spec.shape is not None
            and len(spec.shape) >= 1 and all(d > 0 for d in spec.shape[1:]))


def _tensor_request(arr: np.ndarray, spec: TensorSpec) -> InferRequest:
    if arr.ndim == 0:
        raise InvalidInput("application/x-npy body must have a batch dimension, got a 0-d array")
    if spec.dtype is not None and arr.dtype != spec.dtype:
        if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
            raise InvalidInput(f"application/x-npy array of {arr.dtype} cannot be cast to input "
                               f"'{spec.name}' of {spec.dtype}")
        arr = arr.astype(spec.dtype)
    if spec.shape is not None:
        want = spec.shape
        if len(want) != arr.ndim or any(w != -1 and w != g for w, g in zip(want[1:], arr.shape[1:])):
            raise InvalidInput(f"application/x-npy array of shape {list(arr.shape)} does not fit input "
                               f"'{spec.name}' of shape {list(want)}")
    return InferRequest(inputs={spec.name: arr}, batch_size=arr.shape[0])
