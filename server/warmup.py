"""Requests generated from a signature: for warm-up at load (and any tool that needs a sample)."""

from __future__ import annotations

import numpy as np

from .types import InferRequest, Signature


def generated_request(signature: Signature, rows: int = 1) -> InferRequest | None:
    """A batch of ``rows`` zero-valued instances, or None when an input's shape is not fixed."""
    inputs = {}
    for spec in signature.inputs:
        if spec.shape is None or any(d < 0 for d in spec.shape[1:]):
            return None
        shape = (rows, *spec.shape[1:])
        if spec.dtype is None:
            inputs[spec.name] = np.zeros(shape, dtype=np.float64)
        elif spec.dtype.kind == "O":
            arr = np.empty(shape, dtype=object)
            arr.fill(b"")
            inputs[spec.name] = arr
        else:
            inputs[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return InferRequest(inputs=inputs, batch_size=rows)
