"""Dynamic batching: order, splitting, per-request errors, deadlines, admission, nothing lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import NamedTuple

import numpy as np
import pytest

from hyperserve.handlers.base import Capabilities, Handler
from hyperserve.server.errors import DeadlineExceeded, InvalidInput, ModelError, Overloaded
from hyperserve.server.scheduler.batching import batch_key, concat_requests, split_response, take_batch
from hyperserve.server.scheduler.runner import ModelRunner
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec


class RecordingHandler(Handler):
    """Doubles its input; records every call's batch size; fails rows equal to -1."""

    name = "recording"

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.threads: list[str] = []  # the thread each call ran on
        self.delay = delay
        self.lock = threading.Lock()

    def load(self, artifact, config):
        pass

    def signature(self):
        return Signature((TensorSpec("x", np.dtype(np.float32), (-1, 1)),), (TensorSpec("y"),))

    def predict(self, request):
        with self.lock:
            self.calls.append(request.batch_size)
            self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        x = request.inputs["x"]
        if (x == -1).any():
            raise ValueError("row is -1")
        if (x == -2).any():
            raise InvalidInput("row is -2")
        return InferResponse({"y": x[:, 0] * 2})


def req(*values, **params) -> InferRequest:
    return InferRequest(inputs={"x": np.array([[v] for v in values], dtype=np.float32)}, batch_size=len(values),
                        parameters=params)


def run_with(handler, body, **options):
    """Run ``await body(runner)`` on a fresh event loop with a ModelRunner for ``handler``."""
    async def go():
        runner = ModelRunner(handler, name="m", **{"threads": 1, "max_queue": 100, **options})
        try:
            return await body(runner), runner
        finally:
            runner.close()

    return asyncio.run(go())


# -- pure batching functions ---------------------------------------------------------------

def test_concat_and_split_round_trip():
    requests = [req(1, 2), req(3), req(4, 5, 6)]
    joined = concat_requests(requests)
    assert joined.batch_size == 6 and joined.inputs["x"][:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    parts = split_response(InferResponse({"y": joined.inputs["x"][:, 0] * 10}), requests)
    assert [p.outputs["y"].tolist() for p in parts] == [[10, 20], [30], [40, 50, 60]]


def test_object_inputs_are_joined_as_lists():
    a = InferRequest(inputs={"instances": [{"a": 1}]}, batch_size=1)
    b = InferRequest(inputs={"instances": [{"a": 2}, {"a": 3}]}, batch_size=2)
    assert concat_requests([a, b]).inputs["instances"] == [{"a": 1}, {"a": 2}, {"a": 3}]


class Queued(NamedTuple):
    request: InferRequest
    tag: int


def queue_of(*requests: InferRequest) -> deque:
    return deque(Queued(r, i) for i, r in enumerate(requests))


def test_only_compatible_requests_share_a_batch_and_order_is_kept():
    other_shape = InferRequest(inputs={"x": np.zeros((1, 3), np.float32)}, batch_size=1)
    queue = queue_of(req(1), other_shape, req(2), req(3, sleep=1), req(4))
    first = take_batch(queue, 64)
    assert [tag for _, tag in first] == [0, 2, 4]
    assert [tag for _, tag in queue] == [1, 3]
    assert batch_key(req(1)) != batch_key(req(1, sleep=1))
    assert batch_key(req(1)) == batch_key(req(2, 3))


def test_batches_respect_max_rows():
    queue = queue_of(req(1, 2, 3), req(4, 5), req(6))
    assert [t for _, t in take_batch(queue, 4)] == [0]
    assert [t for _, t in take_batch(queue, 4)] == [1, 2]


# -- the runner ------------------------------------------------------------------------------

def test_concurrent_requests_share_calls_and_each_gets_its_own_rows():
    handler = RecordingHandler(delay=0.02)

    async def scenario(runner):
        return await asyncio.gather(*[runner.infer(req(i, i + 0.5)) for i in range(100)])

    results, runner = run_with(handler, scenario, max_queue=1000, max_batch_size=16)
    for i, response in enumerate(results):
        assert response.outputs["y"].tolist() == [2 * i, 2 * i + 1]
    assert sum(handler.calls) == 200  # every row ran exactly once
    assert max(handler.calls) > 2  # and calls were shared
    assert all(c <= 16 for c in handler.calls)
    assert sum(size * n for size, n in runner.batch_sizes.items()) == 200


def test_a_bad_request_fails_alone():
    handler = RecordingHandler(delay=0.01)

    async def scenario(runner):
        blocker = asyncio.ensure_future(runner.infer(req(0)))
        await asyncio.sleep(0)
        outcomes = await asyncio.gather(runner.infer(req(1)), runner.infer(req(-1)), runner.infer(req(-2)),
                                        runner.infer(req(3)), return_exceptions=True)
        await blocker
        return outcomes

    (ok1, bad, invalid, ok3), _ = run_with(handler, scenario)
    assert ok1.outputs["y"].tolist() == [2] and ok3.outputs["y"].tolist() == [6]
    assert isinstance(bad, ModelError) and "ValueError: row is -1" in bad.message
    assert isinstance(invalid, InvalidInput) and invalid.status == 400


def test_deadline_passed_in_queue_never_runs_the_model():
    handler = RecordingHandler(delay=0.3)

    async def scenario(runner):
        slow = asyncio.ensure_future(runner.infer(req(1)))
        await asyncio.sleep(0.05)
        late = req(2)
        late.deadline = time.monotonic() + 0.05
        with pytest.raises(DeadlineExceeded):
            await runner.infer(late)
        await slow
        await asyncio.sleep(0.05)

    run_with(handler, scenario)
    assert handler.calls == [1]


def test_full_queue_answers_overloaded_at_once():
    handler = RecordingHandler(delay=0.2)

    async def scenario(runner):
        first = asyncio.ensure_future(runner.infer(req(1)))
        await asyncio.sleep(0.02)  # running, so the queue is empty again
        queued = [asyncio.ensure_future(runner.infer(req(i))) for i in (2, 3)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(Overloaded) as info:
            await runner.infer(req(4))
        assert time.monotonic() - started < 0.05 and info.value.headers["retry-after"] == "1"
        await asyncio.gather(first, *queued)

    run_with(handler, scenario, max_queue=2)


def test_queue_delay_gathers_a_fuller_batch():
    handler = RecordingHandler()

    async def scenario(runner):
        tasks = []
        for i in range(6):
            tasks.append(asyncio.ensure_future(runner.infer(req(i))))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)

    run_with(handler, scenario, max_batch_size=8, max_queue_delay=0.05)
    assert handler.calls == [6]


def test_non_batchable_handlers_run_one_request_per_call():
    handler = RecordingHandler(delay=0.01)
    handler.capabilities = Capabilities(batchable=False)

    async def scenario(runner):
        await asyncio.gather(*[runner.infer(req(i)) for i in range(10)])

    run_with(handler, scenario, max_batch_size=64)
    assert handler.calls == [1] * 10


def test_cancelled_requests_are_skipped():
    handler = RecordingHandler(delay=0.1)

    async def scenario(runner):
        first = asyncio.ensure_future(runner.infer(req(1)))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(runner.infer(req(2)))
        await asyncio.sleep(0)
        gone.cancel()  # the client disconnected while queued
        await first
        await asyncio.sleep(0.05)

    run_with(handler, scenario)
    assert handler.calls == [1]


def test_preferred_batch_sizes_cut_batches():
    handler = RecordingHandler(delay=0.05)

    async def scenario(runner):
        first = asyncio.ensure_future(runner.infer(req(0)))
        await asyncio.sleep(0.01)  # the model is busy; eleven requests queue up behind it
        rest = [asyncio.ensure_future(runner.infer(req(i))) for i in range(1, 12)]
        await asyncio.gather(first, *rest)

    run_with(handler, scenario, max_batch_size=16, preferred_batch_sizes=(4, 8))
    assert handler.calls[:3] == [1, 8, 3]  # 11 queued: a preferred 8, then the remaining 3


class PythonHandler(RecordingHandler):
    """A handler whose calls hold the GIL (as scikit-learn's do)."""

    capabilities = Capabilities(releases_gil=False, runs_inline=True)


def test_short_calls_of_a_gil_holding_handler_run_on_the_event_loop():
    async def one_at_a_time(runner):
        for i in range(20):
            await runner.infer(req(i))

    fast = PythonHandler()
    run_with(fast, one_at_a_time)
    # The first call is timed on the model thread; once calls are known to be short (their moving
    # average, which a slow first call on a busy machine takes a few calls to leave), the loop runs them.
    assert fast.threads[0].startswith("model-m") and fast.threads[-5:] == [threading.main_thread().name] * 5
    slow = PythonHandler(delay=0.005)
    run_with(slow, one_at_a_time)
    assert all(name.startswith("model-m") for name in slow.threads)
    threaded = RecordingHandler()  # releases the GIL: always a model thread
    run_with(threaded, one_at_a_time)
    assert all(name.startswith("model-m") for name in threaded.threads)


def test_a_wave_of_requests_after_a_full_call_is_not_split():
    """Clients answered by a call of N send again one by one; the next call waits (briefly) for N."""
    handler = PythonHandler()

    async def waves(runner):
        await asyncio.gather(*[runner.infer(req(i)) for i in range(8)])
        second = []
        for i in range(8):  # each arrives in its own loop iteration, as reads from 8 sockets do
            second.append(asyncio.ensure_future(runner.infer(req(i))))
            await asyncio.sleep(0)
        await asyncio.gather(*second)
        await runner.infer(req(0))  # no partners come: it goes alone once the hold (2 ms at most) ends

    _, runner = run_with(handler, waves)
    assert handler.calls == [8, 8, 1]
    assert runner.batch_sizes == {8: 2, 1: 1}


def test_a_batch_is_split_by_one_call_and_a_reply_that_cannot_be_made_fails_alone():
    """The requests' split runs once per batch; if it fails, each request's part is split alone,
    so only the request whose reply cannot be made gets the error."""
    handler = RecordingHandler(delay=0.02)
    split_calls: list[int] = []

    def split(response, requests):
        split_calls.append(len(requests))
        values = response.outputs["y"].tolist()
        if 14.0 in values:  # the request of 7 cannot be encoded
            raise TypeError("cannot encode 14")
        return [f"rows {v}" for v in values]

    async def scenario(runner):
        replies: dict[int, object] = {}

        def submit(value):
            runner.submit(req(value), lambda result, value=value: replies.__setitem__(value, result), split)

        submit(0)  # runs alone; the next four queue behind it and share one call
        await asyncio.sleep(0.005)
        for value in (1, 2, 3):
            submit(value)
        await asyncio.sleep(0.1)
        for value in (4, 7, 5):
            submit(value)
        await asyncio.sleep(0.1)
        return replies

    replies, _ = run_with(handler, scenario, max_batch_size=8)
    assert handler.calls == [1, 3, 3]
    assert split_calls == [1, 3, 3, 1, 1, 1]  # the failed batch: once whole, then each request alone
    assert {v: replies[v] for v in (0, 1, 2, 3, 4, 5)} == {v: f"rows {2.0 * v}" for v in (0, 1, 2, 3, 4, 5)}
    assert isinstance(replies[7], TypeError)


def test_deadlines_share_one_timer_and_fire_for_queued_and_running_requests():
    """Each request is answered 504 at its own deadline (not before), whether it waits in the queue
    or its call is running; the others are answered by the model."""
    handler = RecordingHandler(delay=0.3)

    async def scenario(runner):
        def timed(value, seconds):
            request = req(value)
            if seconds is not None:
                request.deadline = time.monotonic() + seconds
            return asyncio.ensure_future(runner.infer(request))

        started = time.monotonic()
        running = timed(1, 0.1)  # its call takes 0.3 s: answered 504 while it runs
        await asyncio.sleep(0.01)
        queued = [timed(2, 0.2), timed(3, 0.05), timed(4, None), timed(5, 5.0)]
        outcomes = await asyncio.gather(running, *queued, return_exceptions=True)
        return outcomes, time.monotonic() - started, runner._deadline_at - time.monotonic()

    (outcomes, elapsed, next_check), runner = run_with(handler, scenario, max_batch_size=8)
    timed_out = [isinstance(o, DeadlineExceeded) for o in outcomes]
    assert timed_out == [True, True, True, False, False]
    assert [o.outputs["y"].tolist() for o in outcomes[3:]] == [[8.0], [10.0]]
    assert handler.calls == [1, 2]  # the two queued requests that expired never ran
    assert elapsed < 1.0 and next_check > 3.0  # the timer waits for the 5 s deadline, the only one left


def test_an_answer_to_an_expired_request_may_queue_another_at_once():
    """A 504's reply can submit the connection's next (pipelined) request synchronously; the
    deadline check must not trip over the queue it is walking."""
    handler = RecordingHandler(delay=0.1)

    async def scenario(runner):
        replies: list = []
        running = asyncio.ensure_future(runner.infer(req(1)))
        await asyncio.sleep(0.01)
        expiring = [req(2), req(3)]
        for request in expiring:
            request.deadline = time.monotonic() + 0.02
            runner.submit(request, lambda result: (replies.append(result),
                                                   runner.submit(req(4), replies.append)))
        await running
        await asyncio.sleep(0.2)
        return replies

    replies, _ = run_with(handler, scenario, max_batch_size=8)
    assert [type(r).__name__ for r in replies[:2]] == ["DeadlineExceeded"] * 2
    assert [r.outputs["y"].tolist() for r in replies[2:]] == [[8.0], [8.0]]
    assert handler.calls == [1, 2]


class OverlapHandler(RecordingHandler):
    """Records how many of its calls overlap; thread-safe or not as the test says."""

    def __init__(self, thread_safe: bool):
        super().__init__(delay=0.03)
        self.capabilities = Capabilities(thread_safe=thread_safe, batchable=False)
        self.inside = 0
        self.most_inside = 0

    def predict(self, request):
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            return super().predict(request)
        finally:
            with self.lock:
                self.inside -= 1


def test_a_handler_that_is_not_thread_safe_has_one_call_in_flight_whatever_the_threads():
    async def scenario(runner):
        await asyncio.gather(*[runner.infer(req(i)) for i in range(8)])
        return runner.slots

    unsafe, safe = OverlapHandler(thread_safe=False), OverlapHandler(thread_safe=True)
    assert run_with(unsafe, scenario, threads=4)[0] == 1
    assert unsafe.calls == [1] * 8 and unsafe.most_inside == 1
    assert run_with(safe, scenario, threads=4)[0] == 4
    assert safe.most_inside > 1  # the same load on a thread-safe handler overlaps


def test_parameters_without_a_canonical_encoding_run_alone_and_are_answered():
    """An integer of hundreds of digits in the parameters: its batch key cannot be JSON-encoded.
    The request runs alone and is answered; the requests queued beside it are answered too."""
    handler = RecordingHandler(delay=0.02)

    async def scenario(runner):
        huge = InferRequest({"x": np.array([[1.0]], dtype=np.float32)}, 1, parameters={"n": 10 ** 300})
        others = [runner.infer(req(i)) for i in range(4)]
        return await asyncio.wait_for(asyncio.gather(runner.infer(huge), *others), 5)

    answers, _ = run_with(handler, scenario, max_batch_size=8)
    assert len(answers) == 5
    assert batch_key(InferRequest({"x": np.zeros((1, 1))}, 1, parameters={"n": 10 ** 300}))[0] == ("alone",)


class ScriptLikeHandler(RecordingHandler):
    """One request per call, one call at a time, on a model thread (as a scoring script runs);
    calls on rows of 100 block until ``release`` is set."""

    capabilities = Capabilities(thread_safe=False, releases_gil=False, batchable=False)

    def __init__(self):
        super().__init__()
        self.slow_started = threading.Event()
        self.release = threading.Event()
        self.released = False  # the loop set ``release`` while the call waited for it

    def predict(self, request):
        if (request.inputs["x"] == 100).any():
            self.slow_started.set()
            self.released = self.release.wait(5)
        return super().predict(request)


def test_short_one_request_calls_are_awaited_off_the_loop_and_a_long_one_never_holds_it():
    handler = ScriptLikeHandler()
    woken = []  # calls answered through the loop's wake-up from the model thread

    async def scenario(runner):
        finish_job = runner._finish_job
        runner._finish_job = lambda *a: (woken.append(1), finish_job(*a))
        first = await asyncio.gather(*[runner.infer(req(i)) for i in range(30)])
        awaited = 30 - len(woken)
        # A long call after short ones: the loop waits for it at most the budget, then goes on.
        slow = asyncio.ensure_future(runner.infer(req(100)))
        ticks = 0
        while not handler.slow_started.is_set() or ticks < 3:
            await asyncio.sleep(0.001)
            ticks += handler.slow_started.is_set()
        handler.release.set()
        return first, awaited, (await slow).outputs["y"].tolist()

    (first, awaited, slow), _ = run_with(handler, scenario, max_batch_size=64)
    assert [r.outputs["y"].tolist() for r in first] == [[2.0 * i] for i in range(30)]
    assert slow == [200.0] and handler.released  # the loop ran during the long call
    assert handler.calls == [1] * 31 and all(name.startswith("model-m") for name in handler.threads)
    assert awaited > 0  # the loop waited for short calls itself, GIL released, instead of being woken


def test_chunks_are_made_on_the_model_thread_closed_early_and_read_whole_when_pickled():
    import pickle

    from hyperserve.server.types import Chunks

    made_on, cleaned = [], []

    def body():
        try:
            for part in ("a", b"", b"b", bytearray(b"c")):
                made_on.append(threading.current_thread().name)
                yield part
        finally:
            cleaned.append(True)

    async def scenario(runner):
        chunks = Chunks(body())
        first = await runner.on_model_thread(chunks.next)
        second = await runner.on_model_thread(chunks.next)  # the empty chunk is skipped
        await runner.on_model_thread(chunks.close)
        return first, second

    (first, second), _ = run_with(ScriptLikeHandler(), scenario)
    assert (first, second) == (b"a", b"b") and cleaned == [True]
    assert made_on and all(name.startswith("model-m") for name in made_on)
    copy = pickle.loads(pickle.dumps(Chunks(iter(["x", "y"]))))
    assert [copy.next(), copy.next()] == [b"xy", b""]
