"""Forming batches from queued requests and splitting results back: pure functions, no I/O.

A batch holds requests that can share one framework call: the same input names, dtypes and
per-instance shapes, and the same parameters. Tensors are concatenated along dimension 0;
inputs that are Python lists (handlers that take objects) are joined as lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..types import InferRequest, InferResponse, one_tensor_key


_ALONE = ("alone",)  # never equal to another request's key object


def batch_key(request: InferRequest) -> tuple:
    """Requests with equal keys can share a call; raw bodies and odd inputs run alone. Never
    raises: a request whose key cannot be made runs alone (the scheduler calls this in its launch,
    where an exception would leave requests unanswered)."""
    key = request.batch_key
    if key is None:
        try:
            key = _compute_key(request)
        except Exception:  # noqa: BLE001 - a key is an optimisation; running alone is always correct
            key = (_ALONE, request.id)
        request.batch_key = key
    return key


def _compute_key(request: InferRequest) -> tuple:
    if request.raw is not None or request.unbatched:
        return (_ALONE, request.id)
    inputs = request.inputs
    if len(inputs) == 1 and not request.parameters:  # the usual request: one array
        for name, value in inputs.items():
            if type(value) is np.ndarray:
                return one_tensor_key(name, value.dtype, value.shape[1:], request.signature_name)
    parts = []
    for name, value in request.inputs.items():
        if type(value) is np.ndarray:
            parts.append((name, value.dtype, value.shape[1:]))
        elif type(value) is list:
            parts.append((name, list))
        else:
            return (_ALONE, request.id)
    params = b""
    if request.parameters:
        try:
            params = orjson.dumps(request.parameters, option=orjson.OPT_SORT_KEYS)
        except (TypeError, ValueError):  # orjson.JSONEncodeError: e.g. an integer past 64 bits
            # Parameters with no canonical encoding cannot be compared: the request runs alone.
            return (_ALONE, request.id)
    return tuple(parts), params, request.signature_name


def take_batch(queue, max_rows: int) -> list:
    """Pop from the front of ``queue`` (items whose ``.request`` is an InferRequest) the requests
    that share the first one's key, up to ``max_rows`` instances; others keep their place."""
    first = queue.popleft()
    batch = [first]
    key = batch_key(first.request)
    rows = first.request.batch_size
    if key[0] is _ALONE or not queue:
        return batch
    skipped = []
    while queue and rows < max_rows:
        request = queue[0].request
        if (request.batch_key or batch_key(request)) != key:
            skipped.append(queue.popleft())
            if len(skipped) > 8:  # do not scan a long queue looking for partners
                break
            continue
        if rows + request.batch_size > max_rows:
            break
        batch.append(queue.popleft())
        rows += request.batch_size
    queue.extendleft(reversed(skipped))
    return batch


def concat_requests(requests: list[InferRequest]) -> InferRequest:
    if len(requests) == 1:
        return requests[0]
    first = requests[0]
    inputs: dict[str, Any] = {}
    for name, value in first.inputs.items():
        if isinstance(value, np.ndarray):
            inputs[name] = np.concatenate([r.inputs[name] for r in requests], axis=0)
        else:
            joined: list = []
            for r in requests:
                joined.extend(r.inputs[name])
            inputs[name] = joined
    return InferRequest(inputs=inputs, batch_size=sum(r.batch_size for r in requests),
                        parameters=first.parameters, headers=first.headers, parts=requests,
                        signature_name=first.signature_name)


def split_response(response: InferResponse, requests: list[InferRequest]) -> list[InferResponse]:
    """Give each request its own rows of every output, in order."""
    if len(requests) == 1:
        return [response]
    return response.split([r.batch_size for r in requests])
