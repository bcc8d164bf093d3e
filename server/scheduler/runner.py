"""Runs a handler off the event loop with adaptive dynamic batching.

Requests queue per model. Whenever a call slot is free, the queued requests that can share a call
(up to ``max_batch_size`` instances) go to the model together, so under low load a request runs
at once and under high load calls fill up. ``max_queue_delay`` (seconds) optionally holds a
partial batch a little longer for partners. Admission happens on the loop (a full queue answers
503 at once); expired deadlines are answered 504 without running the model.

Each queued request holds a ``Ticket`` whose reply callback runs exactly once, on the loop: with
its reply, its error, or 504 when its deadline passes first. Callbacks, not a future and a task
per request, because on a small model that bookkeeping costs as much as the model call's share.
For the same reason deadlines share one timer per model (armed for the earliest), and a batch's
response is split into its requests' replies by one call of their ``split`` (which the protocol
chooses, e.g. to encode every request's body at once), not one call per request.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
import time
from collections import Counter, deque
from concurrent.futures import CancelledError as FutureCancelled, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from itertools import chain
from typing import Any, Callable

from ..metrics.histogram import SECONDS_BOUNDS, Histogram
from ..errors import DeadlineExceeded, ModelError, Overloaded, ServingError
from ..types import InferRequest, InferResponse
from .batching import concat_requests, split_response, take_batch

# In adaptive mode a partial batch is held at most this long after a call finishes, waiting for
# as many instances as that call had.
ADAPTIVE_MAX_HOLD_S = 0.002
ADAPTIVE_MIN_ROWS = 4  # below this, merging is not worth a wait
# A handler that holds the GIL through its calls (capabilities.runs_inline) runs on the event loop while
# its calls take less than this: a model thread would not let the loop run during them anyway
# (the loop only gets the GIL back every sys.getswitchinterval(), 5 ms), and the hand-off between
# threads would cost a share of every call.
INLINE_MAX_CALL_S = 0.001
# A model that takes one request per call (a scoring script, a CPR predictor) and runs on a model
# thread: while its only slot is busy with a call that usually ends within HANDOFF_WAIT_S, the loop
# waits for it with the GIL released, at most HANDOFF_BUDGET_S per pass of the loop. Otherwise the
# loop and the model thread trade the GIL at every release inside the call (numpy releases it many
# times) and each answer costs a cross-thread wake-up; there is nothing to merge, so the loop loses
# nothing by waiting. Health probes wait at most the budget.
HANDOFF_WAIT_S = 0.001
HANDOFF_BUDGET_S = 0.002
# Deadlines are checked by one timer per model; after it fires it waits at least this long before
# firing again, so a queue of requests that expire one after another is scanned once per interval.
DEADLINE_SLACK_S = 0.001


log = logging.getLogger("hyperserve.scheduler")

Reply = Callable[[Any], None]  # called once with what ``split`` made for the request, or an exception
# A batch's response and its requests → one reply value per request (an exception fails only its own).
Split = Callable[[InferResponse, list[InferRequest]], list]


class Ticket:
    """One request's place in a model's queue: its reply runs exactly once, or never after cancel()."""

    __slots__ = ("request", "_reply", "split")

    def __init__(self, request: InferRequest, reply: Reply, split: Split = split_response):
        self.request = request
        self._reply: Reply | None = reply
        self.split = split

    @property
    def answered(self) -> bool:
        return self._reply is None

    def answer(self, result) -> None:
        reply = self._reply
        if reply is None:
            return
        self._reply = None
        try:
            reply(result)
        except Exception:  # noqa: BLE001 - one reply's failure must not cost the batch's other replies
            log.exception("a reply callback failed")

    def cancel(self) -> None:
        """The client is gone: never answer, and skip the model if the request is still queued."""
        self._reply = None

    def expire(self) -> None:
        self.answer(DeadlineExceeded("the request timed out before the model answered"))


def _settle(future: asyncio.Future, result) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _rows(value) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


class RunnerStats:
    """Cumulative counts and seconds, as Triton's statistics report them: requests answered and
    failed (with their time from queueing to answer), time queued, framework calls and their time."""

    __slots__ = ("success", "success_s", "failed", "failed_s", "queue_s", "compute_s", "calls", "instances",
                 "last_inference")

    def __init__(self):
        self.success = self.failed = self.calls = self.instances = 0
        self.success_s = self.failed_s = self.queue_s = self.compute_s = 0.0
        self.last_inference = 0.0  # time.time() of the last call's end (0: none yet)


class ModelRunner:
    def __init__(self, handler, *, name: str, threads: int, max_queue: int, max_batch_size: int = 64,
                 max_queue_delay: float = 0.0, preferred_batch_sizes: tuple[int, ...] = (), timed: bool = True,
                 traced: bool = False, adaptive_hold: bool = True):
        self.handler = handler
        self.name = name
        self.max_queue = max_queue
        capabilities = handler.capabilities
        self.max_batch_size = max_batch_size if capabilities.batchable else 1
        self._inline = capabilities.runs_inline
        self.max_queue_delay = max_queue_delay
        # Off for a batch job: it queues every request it has at once, so a partial batch has no
        # partners coming, and a hold only idles the model (bench/README.md: 1.27 times a worker's rows/s).
        self.adaptive_hold = adaptive_hold
        # Batch sizes the model runs best at (e.g. compiled shapes); a batch is cut to the largest
        # one the queue can fill, and a queue delay ends as soon as one is reached.
        self.preferred = tuple(sorted(p for p in preferred_batch_sizes if 0 < p <= self.max_batch_size))
        # A handler that is not thread-safe has one call in flight, whatever --model-threads says.
        self.slots = max(1, threads) if capabilities.thread_safe else 1
        self.busy = 0
        self.queue: deque[Ticket] = deque()
        self._queued_rows = 0  # instances waiting in ``queue``, kept as it changes
        self.batch_sizes: Counter[int] = Counter()  # instances per framework call
        self.stats = RunnerStats()
        self.batch_seconds: Counter[int] = Counter()  # framework seconds per batch size
        # Metrics' histograms: each request's seconds queued, each call's seconds (when timed).
        self.queue_seconds = Histogram()
        self.compute_seconds = Histogram()
        self._timed = timed
        self._traced = traced  # requests may carry SpanTimes to fill in (tracing on)
        self._slot_freed = 0.0  # time.monotonic() when a call last finished and was answered
        self._last_rows = 0  # instances in the call that finished last
        self._recent_call_s = 0.0  # moving average of a call's seconds (0: none measured yet)
        self._launch_scheduled = False
        self._hold_until_rows = 0  # while a partial batch is held: the rows that end the hold
        self._delay_timer: asyncio.TimerHandle | None = None
        # The batches in framework calls now, each with the sum of its requests' queueing times.
        self._running: dict[tuple[Ticket, ...], float] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = float("inf")  # when _deadline_timer fires (time.monotonic())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix=f"model-{name}")

    @property
    def pending(self) -> int:
        return len(self.queue) + self.busy

    # -- on the event loop ------------------------------------------------------------------

    def submit(self, request: InferRequest, reply: Reply, split: Split = split_response) -> Ticket:
        """Queue a request; ``reply`` gets its part of ``split``'s result (by default its own
        InferResponse) or its error later, on the loop. A full queue raises Overloaded at once."""
        if len(self.queue) >= self.max_queue:
            raise Overloaded(f"model '{self.name}' is overloaded: {len(self.queue)} requests are queued "
                             f"(limit {self.max_queue}); retry later", headers={"retry-after": "1"})
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        ticket = Ticket(request, reply, split)
        request.enqueued = time.monotonic()
        if request.trace is not None:
            request.trace.queued = request.enqueued
        if request.deadline is not None and request.deadline < self._deadline_at:
            self._arm_deadline(request.deadline)
        self.queue.append(ticket)
        self._queued_rows += request.batch_size
        if not self._launch_scheduled and self.busy < self.slots and self._queued_rows >= self._hold_until_rows:
            # Launched once the loop has read everything ready now, so that requests that arrived
            # together share a call.
            self._launch_scheduled = True
            loop.call_soon(self._scheduled_launch)
        return ticket

    def _scheduled_launch(self):
        self._launch_scheduled = False
        self._hold_until_rows = 0
        self._launch()

    def _arm_deadline(self, when: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = when
        self._deadline_timer = self._loop.call_later(max(when - time.monotonic(), 0.0), self._expire_due)

    def _expire_due(self) -> None:
        """Answer 504 to every queued or running request whose deadline passed; arm for the next."""
        self._deadline_timer = None
        self._deadline_at = float("inf")
        now = time.monotonic()
        earliest = float("inf")
        # A copy: an answer can queue a request at once (the connection's next pipelined one).
        for ticket in [*self.queue, *chain.from_iterable(self._running)]:
            deadline = ticket.request.deadline
            if deadline is None or ticket.answered:
                continue
            if deadline <= now:
                ticket.expire()
            elif deadline < earliest:
                earliest = deadline
        if earliest != float("inf"):
            self._arm_deadline(max(earliest, now + DEADLINE_SLACK_S))

    async def infer(self, request: InferRequest) -> InferResponse:
        future = (self._loop or asyncio.get_running_loop()).create_future()
        ticket = self.submit(request, lambda result: _settle(future, result))
        try:
            return await future
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    def on_model_thread(self, work: Callable[[], Any]) -> asyncio.Future:
        """``work()`` on the model's thread (one at a time with its calls unless it is thread-safe)."""
        return asyncio.get_running_loop().run_in_executor(self._pool, work)

    def _launch(self):
        queue = self.queue
        budget_end = None  # of this pass's waits for calls (HANDOFF_BUDGET_S)
        while self.busy < self.slots and queue:
            if self._should_wait():
                return
            batch = take_batch(queue, self._batch_limit())
            now = time.monotonic()
            live = []
            rows = 0
            enqueued = 0.0  # the sum of the live requests' queueing times (statistics, kept per batch)
            for ticket in batch:
                request = ticket.request
                self._queued_rows -= request.batch_size
                if ticket.answered:  # the client went away or its deadline passed while queued
                    continue
                if request.deadline is not None and now > request.deadline:
                    ticket.answer(DeadlineExceeded(
                        "the request's deadline passed while it waited in the queue; the model did not run"))
                    continue
                live.append(ticket)
                rows += request.batch_size
                enqueued += request.enqueued
            if not live:
                continue
            if self._timed:  # Histogram.observe, inline: once per request
                queued = self.queue_seconds
                counts = queued.counts
                for ticket in live:
                    waited = now - ticket.request.enqueued
                    counts[bisect_left(SECONDS_BOUNDS, waited)] += 1
                    queued.sum += waited
            if self._traced:
                for ticket in live:
                    if ticket.request.trace is not None:
                        ticket.request.trace.launched(now, rows)
            self.stats.queue_s += len(live) * now - enqueued
            self.busy += 1
            self.batch_sizes[rows] += 1
            running = tuple(live)
            self._running[running] = enqueued
            if self._inline and 0 < self._recent_call_s < INLINE_MAX_CALL_S:
                try:
                    results, seconds = self._timed_run(running)
                except BaseException as err:  # noqa: BLE001 - answered, as a model thread's future would be
                    results, seconds = [err] * len(running), 0.0
                self._finish(running, results, seconds, rows)
                continue
            try:
                job = self._pool.submit(self._timed_run, running)
            except Exception as err:  # noqa: BLE001 - e.g. the pool is shut down: this batch fails, the queue goes on
                self._finish(running, [ModelError(f"model '{self.name}' could not be run: {type(err).__name__}: "
                                                  f"{err}")] * len(running), 0.0, rows)
                continue
            if self.max_batch_size == 1 and self.busy >= self.slots and 0 < self._recent_call_s < HANDOFF_WAIT_S:
                if budget_end is None:
                    budget_end = time.monotonic() + HANDOFF_BUDGET_S
                if self._await_call(job, running, rows, budget_end):
                    continue
            job.add_done_callback(lambda done, items=running, rows=rows: self._loop.call_soon_threadsafe(
                self._finish_job, items, done, rows))

    def _batch_limit(self) -> int:
        if not self.preferred:
            return self.max_batch_size
        rows = self._queued_rows
        fitting = [p for p in self.preferred if p <= rows]
        return fitting[-1] if fitting else self.max_batch_size

    def _should_wait(self) -> bool:
        """Hold a partial batch for partners: up to ``max_queue_delay`` when one is set. In
        adaptive mode, only right after a call of N instances finished with none running: the
        clients it answered usually send again, so the next call waits (at most
        ADAPTIVE_MAX_HOLD_S) until N instances queue. A lone request under low load never waits,
        and under a steady load calls do not split into two half-full waves."""
        if self.max_batch_size <= 1:
            return False
        rows = self._queued_rows
        if rows >= self.max_batch_size or (self.preferred and rows >= self.preferred[0]):
            return False
        if self.max_queue_delay > 0:
            start, delay = self.queue[0].request.enqueued, self.max_queue_delay
            enough = self.preferred[0] if self.preferred else self.max_batch_size
        elif self.adaptive_hold and self.busy == 0 and ADAPTIVE_MIN_ROWS <= self._last_rows and rows < self._last_rows:
            start, delay, enough = self._slot_freed, ADAPTIVE_MAX_HOLD_S, self._last_rows
        else:
            return False
        wait = start + delay - time.monotonic()
        if wait <= 0:
            return False
        self._hold_until_rows = enough
        if self._delay_timer is None:
            self._delay_timer = self._loop.call_later(wait, self._delay_elapsed)
        return True

    def _delay_elapsed(self):
        self._delay_timer = None
        self._hold_until_rows = 0
        self._launch()

    def _await_call(self, job: Future, items: tuple[Ticket, ...], rows: int, budget_end: float) -> bool:
        """Wait (GIL released) for the call until HANDOFF_WAIT_S or the pass's budget ends; True
        when it ended and was answered here."""
        left = min(budget_end - time.monotonic(), HANDOFF_WAIT_S)
        if left <= 0:
            return False
        try:
            results, seconds = job.result(timeout=left)
        except FutureTimeout:
            return False
        except (Exception, FutureCancelled) as err:  # noqa: BLE001 - the pool failed the whole call
            results, seconds = [err] * len(items), 0.0
        self._finish(items, results, seconds, rows, relaunch=False)  # the caller's loop goes on
        return True

    def _finish_job(self, items, done, rows: int):
        try:
            results, seconds = done.result()
        except BaseException as err:  # noqa: BLE001 - the pool failed the whole call
            results, seconds = [err] * len(items), 0.0
        self._finish(items, results, seconds, rows)

    def _finish(self, items: tuple[Ticket, ...], results: list, seconds: float, rows: int, relaunch: bool = True):
        self.busy -= 1
        enqueued = self._running.pop(items, 0.0)
        self._last_rows = rows
        self._recent_call_s += (seconds - self._recent_call_s) * (0.2 if self._recent_call_s else 1.0)
        stats = self.stats
        stats.calls += 1
        stats.instances += rows
        stats.compute_s += seconds
        if self._timed:
            self.compute_seconds.observe(seconds)
        self.batch_seconds[rows] += seconds
        stats.last_inference = time.time()
        now = time.monotonic()
        failed, failed_s = 0, 0.0
        for ticket, result in zip(items, results):
            if isinstance(result, BaseException):
                failed += 1
                failed_s += now - ticket.request.enqueued
            ticket.answer(result)
        stats.failed += failed
        stats.failed_s += failed_s
        stats.success += len(items) - failed
        stats.success_s += len(items) * now - enqueued - failed_s
        self._slot_freed = time.monotonic()  # after the answers: their clients' next requests follow
        if relaunch:
            self._launch()

    # -- in a model thread (or inline, see INLINE_MAX_CALL_S) ---------------------------------

    def _timed_run(self, tickets: tuple[Ticket, ...]) -> tuple[list, float]:
        started = time.perf_counter()
        results = self._run(tickets)
        return results, time.perf_counter() - started

    def _run(self, tickets: tuple[Ticket, ...]) -> list:
        """One framework call for the batch, split into each request's reply; if the call fails,
        each request alone, so one bad request fails only itself."""
        requests = [t.request for t in tickets]
        try:
            started = time.monotonic() if self._traced else 0.0
            response = self._call(concat_requests(requests))
        except Exception as err:  # noqa: BLE001
            if len(requests) == 1:
                return [err if isinstance(err, ServingError) else self._model_error(err)]
        else:
            if not self._traced:
                return self._split(response, tickets, requests)
            called = time.monotonic()
            results = self._split(response, tickets, requests)
            encoded = time.monotonic()
            for request in requests:
                if request.trace is not None:
                    request.trace.ran(started, called, encoded)
            return results
        results: list = []
        for ticket, request in zip(tickets, requests):
            try:
                results.append(self._split(self._call(request), (ticket,), [request])[0])
            except ServingError as err:
                results.append(err)
            except Exception as err:  # noqa: BLE001
                results.append(self._model_error(err))
        return results

    @staticmethod
    def _split(response: InferResponse, tickets: tuple[Ticket, ...], requests: list[InferRequest]) -> list:
        """The batch's response → each request's reply: one call of their common ``split`` (the
        usual case); else, or if that fails, each request's own part through its own ``split``, so a
        reply that cannot be made fails only its request."""
        split = tickets[0].split
        if all(t.split is split for t in tickets):
            try:
                return split(response, requests)
            except Exception as err:  # noqa: BLE001 - retried per request below, where the failure is kept
                if len(requests) == 1:
                    return [err]
        results: list = []
        for ticket, request, part in zip(tickets, requests, split_response(response, requests)):
            try:
                results.append(ticket.split(part, [request])[0])
            except Exception as err:  # noqa: BLE001
                results.append(err)
        return results

    def _model_error(self, err: Exception) -> ModelError:
        return ModelError(f"model '{self.name}' failed: {type(err).__name__}: {err}")

    def _call(self, request: InferRequest) -> InferResponse:
        response = self.handler.predict(request)
        if request.raw is None and not request.unbatched:
            for out_name, value in response.outputs.items():
                rows = _rows(value)
                if rows != request.batch_size:
                    raise ModelError(f"model '{self.name}' returned {rows} rows for output '{out_name}' "
                                     f"but was given {request.batch_size} instances")
        return response

    def close(self):
        for timer in (self._delay_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
