"""Runs a handler off the event loop with adaptive dynamic batching.

Requests queue per model. Whenever a call slot is free, the queued requests that can share a call
(up to ``max_batch_size`` instances) go to the model together, so under low load a request runs
at once and under high load calls fill up. ``max_queue_delay`` (seconds) optionally holds a
partial batch a little longer for partners. Admission happens on the loop (a full queue answers
503 at once); expired deadlines are answered 504 without running the model.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

from ..errors import DeadlineExceeded, ModelError, Overloaded, ServingError
from ..types import InferRequest, InferResponse
from .batching import concat_requests, split_response, take_batch

# In adaptive mode a partial batch is held at most this long while the load is high.
ADAPTIVE_MAX_HOLD_S = 0.002


def _expire(future: asyncio.Future):
    if not future.done():
        future.set_exception(DeadlineExceeded("the request timed out before the model answered"))


def _rows(value) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


class ModelRunner:
    def __init__(self, handler, *, name: str, threads: int, max_queue: int, max_batch_size: int = 64,
                 max_queue_delay: float = 0.0, preferred_batch_sizes: tuple[int, ...] = ()):
        self.handler = handler
        self.name = name
        self.max_queue = max_queue
        self.max_batch_size = max_batch_size if handler.batchable else 1
        self.max_queue_delay = max_queue_delay
        # Batch sizes the model runs best at (e.g. compiled shapes); a batch is cut to the largest
        # one the queue can fill, and a queue delay ends as soon as one is reached.
        self.preferred = tuple(sorted(p for p in preferred_batch_sizes if 0 < p <= self.max_batch_size))
        self.slots = max(1, threads)
        self.busy = 0
        self.queue: deque[tuple[InferRequest, asyncio.Future]] = deque()
        self._queued_rows = 0  # instances waiting in ``queue``, kept as it changes
        self.batch_sizes: Counter[int] = Counter()  # instances per framework call
        self._recent_rows = 1.0  # moving averages of rows per call and seconds per call
        self._recent_call_s = 0.0
        self._delay_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix=f"model-{name}")

    @property
    def pending(self) -> int:
        return len(self.queue) + self.busy

    # -- on the event loop ------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        if len(self.queue) >= self.max_queue:
            raise Overloaded(f"model '{self.name}' is overloaded: {len(self.queue)} requests are queued "
                             f"(limit {self.max_queue}); retry later", headers={"retry-after": "1"})
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        future = loop.create_future()
        request.enqueued = time.monotonic()
        self.queue.append((request, future))
        self._queued_rows += request.batch_size
        self._launch()
        if request.deadline is None:
            return await future
        # A timer, not asyncio.wait_for: that wraps every request in one more task.
        timer = loop.call_later(max(request.deadline - request.enqueued, 0.0), _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _launch(self):
        queue = self.queue
        while self.busy < self.slots and queue:
            if self._should_wait():
                return
            batch = take_batch(queue, self._batch_limit())
            self._queued_rows -= sum(r.batch_size for r, _ in batch)
            now = time.monotonic()
            live = []
            for request, future in batch:
                if future.done():  # the client went away or its deadline fired while queued
                    continue
                if request.deadline is not None and now > request.deadline:
                    future.set_exception(DeadlineExceeded(
                        "the request's deadline passed while it waited in the queue; the model did not run"))
                    continue
                live.append((request, future))
            if not live:
                continue
            self.busy += 1
            rows = sum(r.batch_size for r, _ in live)
            self.batch_sizes[rows] += 1
            job = self._pool.submit(self._timed_run, [r for r, _ in live])
            job.add_done_callback(lambda done, items=live, rows=rows: self._loop.call_soon_threadsafe(
                self._finish, items, done, rows))

    def _batch_limit(self) -> int:
        if not self.preferred:
            return self.max_batch_size
        rows = self._queued_rows
        fitting = [p for p in self.preferred if p <= rows]
        return fitting[-1] if fitting else self.max_batch_size

    def _should_wait(self) -> bool:
        """Hold a partial batch for partners: up to ``max_queue_delay`` when one is set; in
        adaptive mode only while recent calls were much fuller than the queue (high load), for
        a fraction of a call's duration, so a lone request under low load never waits."""
        if self.max_batch_size <= 1:
            return False
        rows = self._queued_rows
        if rows >= self.max_batch_size or (self.preferred and rows >= self.preferred[0]):
            return False
        if self.max_queue_delay > 0:
            delay = self.max_queue_delay
        elif self.busy == 0 and self._recent_rows >= 4 and rows < self._recent_rows / 2:
            delay = min(self._recent_call_s / 2, ADAPTIVE_MAX_HOLD_S)
        else:
            return False
        wait = self.queue[0][0].enqueued + delay - time.monotonic()
        if wait <= 0:
            return False
        if self._delay_timer is None:
            self._delay_timer = self._loop.call_later(wait, self._delay_elapsed)
        return True

    def _delay_elapsed(self):
        self._delay_timer = None
        self._launch()

    def _finish(self, items, done, rows: int):
        self.busy -= 1
        try:
            results, seconds = done.result()
        except BaseException as err:  # noqa: BLE001 - the pool failed the whole call
            results, seconds = [err] * len(items), 0.0
        self._recent_rows += (rows - self._recent_rows) * 0.2
        self._recent_call_s += (seconds - self._recent_call_s) * 0.2
        for (request, future), result in zip(items, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._launch()

    # -- in a model thread --------------------------------------------------------------------

    def _timed_run(self, requests: list[InferRequest]) -> tuple[list, float]:
        started = time.perf_counter()
        results = self._run(requests)
        return results, time.perf_counter() - started

    def _run(self, requests: list[InferRequest]) -> list:
        """One framework call for the batch; if it fails, each request alone, so one bad
        request fails only itself."""
        try:
            return split_response(self._call(concat_requests(requests)), requests)
        except ServingError as err:
            if len(requests) == 1:
                return [err]
        except Exception as err:  # noqa: BLE001
            if len(requests) == 1:
                return [self._model_error(err)]
        results: list = []
        for request in requests:
            try:
                results.append(self._call(request))
            except ServingError as err:
                results.append(err)
            except Exception as err:  # noqa: BLE001
                results.append(self._model_error(err))
        return results

    def _model_error(self, err: Exception) -> ModelError:
        return ModelError(f"model '{self.name}' failed: {type(err).__name__}: {err}")

    def _call(self, request: InferRequest) -> InferResponse:
        response = self.handler.predict(request)
        if request.raw is None:
            for out_name, value in response.outputs.items():
                rows = _rows(value)
                if rows != request.batch_size:
                    raise ModelError(f"model '{self.name}' returned {rows} rows for output '{out_name}' "
                                     f"but was given {request.batch_size} instances")
        return response

    def close(self):
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
