"""Batch assembly and splitting, and the transport's Python cost per request (no sockets)."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

import numpy as np

from hyperserve.server.scheduler.batching import concat_requests, split_response, take_batch
from hyperserve.server.types import InferRequest, InferResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import transport_micro  # noqa: E402


def _requests(n: int) -> list[InferRequest]:
    return [InferRequest(inputs={"x": np.ones((1, 4), np.float64)}, batch_size=1) for _ in range(n)]


def test_take_concat_split_32_one_row_requests(benchmark):
    reqs = _requests(32)
    out = InferResponse({"y": np.zeros(32)})

    def cycle():
        queue = deque((r, None) for r in reqs)
        batch = [r for r, _ in take_batch(queue, 64)]
        split_response(out, batch)
        return concat_requests(batch)

    assert cycle().batch_size == 32
    benchmark(cycle)


def test_transport_no_op_route(benchmark):
    """Requests per second of the connection handling alone (pipelined, fake transport)."""
    result = benchmark.pedantic(transport_micro.measure, kwargs={"n": 20_000}, rounds=5)
    benchmark.extra_info["us_per_request"] = round(result, 2)
    benchmark.extra_info["requests_per_s"] = round(1e6 / result)
