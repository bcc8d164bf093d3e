"""The types every stage shares: signatures, requests and responses, free of any protocol."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from collections.abc import Generator
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model's signature.

    ``dtype`` None means "infer like numpy would" (handlers that take Python objects);
    ``shape`` uses -1 for a variable dimension and includes the batch dimension.
    ``nan_strings`` lets the string "NaN" stand for a missing float (Vertex's XGBoost convention).
    """

    name: str
    dtype: np.dtype | None = None
    shape: tuple[int, ...] | None = None
    nan_strings: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": "object" if self.dtype is None else str(self.dtype),
            "shape": None if self.shape is None else list(self.shape),
        }


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 0
    # The inputs are a table's columns, one 1-D input each (an MLflow column-based signature): a
    # request's rows are records or named columns, and the model takes them as one table.
    column_based: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": [t.describe() for t in self.inputs],
            "outputs": [t.describe() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
        }


_request_ids = itertools.count(1)


@dataclass(slots=True)
class InferRequest:
    """A decoded request: named batch tensors (or Python objects), with its parameters.

    ``inputs`` maps input names to arrays whose first dimension is the batch, or, for handlers
    without typed inputs, to the list of instances as Python objects. ``raw`` carries a
    rawPredict body the codec did not turn into tensors.
    """

    inputs: dict[str, Any]
    batch_size: int
    parameters: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: RawBody | None = None
    id: int = field(default_factory=_request_ids.__next__)
    deadline: float | None = None  # time.monotonic() after which the request is answered 504
    enqueued: float = 0.0  # time.monotonic() when the scheduler queued it
    batch_key: Any = None  # which requests may share a framework call (set by the scheduler, or a codec)
    parts: list | None = None  # a batch's own requests, in order (for handlers that answer per request)
    signature_name: str | None = None  # which of the model's signatures (TF Serving's signature_name)
    # The inputs are whole tensors, not a batch of instances (TF Serving's columnar format, a v2
    # request with a rank-0 input): the request runs alone and its outputs come back as the model made them.
    unbatched: bool = False
    trace: Any = None  # with tracing on: the SpanTimes the scheduler fills in (server/tracing.py)


def one_tensor_key(name: str, dtype: np.dtype, inner_shape: tuple[int, ...], signature_name: str | None) -> tuple:
    """The batch key of a request with one array input and no parameters: requests with equal keys
    can share a framework call. A codec that knows every such request of an input has the same
    key makes it once and sets it, so the scheduler compares identical objects."""
    return ((name, dtype, inner_shape),), b"", signature_name


# The input that holds a batch of raw bodies (a list of RawBody) for handlers with RawBodies.BATCHED.
RAW_BODIES = "raw_bodies"


@dataclass(slots=True)
class RawBody:
    """A rawPredict body the codec could not type: its media type and bytes (zero copy)."""

    content_type: str
    data: memoryview | bytes


@dataclass(slots=True)
class InferResponse:
    """Named outputs, each with the batch as its first dimension (arrays or lists); ``metadata``
    holds per-instance lists that are split like outputs but are not outputs (e.g. a TorchServe
    handler's per-request status and headers)."""

    outputs: dict[str, Any]
    metadata: dict[str, list] = field(default_factory=dict)

    def split(self, counts: list[int]) -> list[InferResponse]:
        """The first ``counts[0]`` rows of every output and metadata list, then the next
        ``counts[1]``, and so on: a batch's response, back by request."""
        parts = []
        offset = 0
        outputs = list(self.outputs.items())
        if len(outputs) == 1 and not self.metadata:  # the usual reply: one output, no dict per name
            name, value = outputs[0]
            for count in counts:
                end = offset + count
                parts.append(InferResponse({name: value[offset:end]}))
                offset = end
            return parts
        metadata = list(self.metadata.items())
        for count in counts:
            end = offset + count
            parts.append(InferResponse({name: value[offset:end] for name, value in outputs},
                                       {name: value[offset:end] for name, value in metadata}))
            offset = end
        return parts


class Chunks:
    """Output a model makes while it is sent (an Azure ML script's generator body): its chunks,
    each made on the model's own thread when the data plane pulls it (DataPlane.next_chunk).
    Pickled, to leave a model process, it is read whole there first."""

    __slots__ = ("_source", "_iterator")

    def __init__(self, source):
        self._source = source
        self._iterator = iter(source)

    def __reduce__(self):
        return Chunks, ([b"".join(iter(self.next, b""))],)

    def next(self) -> bytes:
        """The next non-empty chunk (text as UTF-8), b"" at the end."""
        for chunk in self._iterator:
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
            if data:
                return data
        return b""

    def close(self) -> None:
        """Runs the source's own clean-up (a generator's ``finally``) if it stopped early."""
        if isinstance(self._source, Generator):
            self._source.close()
