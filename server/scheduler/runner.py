"""Runs a handler off the event loop: a bounded queue in front of a small thread pool.

Admission happens on the loop (a full queue answers 503 at once); the deadline is checked again
in the worker thread, so a request that waited past it never runs the model.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import DeadlineExceeded, ModelError, Overloaded, ServingError
from ..types import InferRequest, InferResponse


def _rows(value) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


class ModelRunner:
    def __init__(self, handler, *, name: str, threads: int, max_queue: int):
        self.handler = handler
        self.name = name
        self.max_queue = max_queue
        self.pending = 0
        self.completed = 0
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"model-{name}")

    def _call(self, request: InferRequest) -> InferResponse:
        if request.deadline is not None and time.monotonic() > request.deadline:
            raise DeadlineExceeded("the request's deadline passed while it waited in the queue; the model did not run")
        try:
            response = self.handler.predict(request)
        except ServingError:
            raise
        except Exception as err:
            raise ModelError(f"model '{self.name}' failed: {type(err).__name__}: {err}") from err
        if request.raw is None:
            for out_name, value in response.outputs.items():
                rows = _rows(value)
                if rows != request.batch_size:
                    raise ModelError(f"model '{self.name}' returned {rows} rows for output '{out_name}' "
                                     f"but was given {request.batch_size} instances")
        return response

    async def infer(self, request: InferRequest) -> InferResponse:
        if self.pending >= self.max_queue:
            raise Overloaded(f"model '{self.name}' is overloaded: {self.pending} requests are queued "
                             f"(limit {self.max_queue}); retry later", headers={"retry-after": "1"})
        self.pending += 1
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, self._call, request)
            if request.deadline is None:
                return await future
            remaining = request.deadline - time.monotonic()
            try:
                return await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.0))
            except TimeoutError:
                raise DeadlineExceeded("the request timed out before the model answered") from None
        finally:
            self.pending -= 1
            self.completed += 1

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
