"""The data plane: what every protocol front-end (and every batch job) asks of the served models,
in no protocol's terms. Health and readiness, finding a model, its status, metadata and
statistics, and infer: readiness, the request's deadline, and the scheduler.

Front-ends turn its answers and its ServingErrors into their own bodies; nothing here knows a
route, a status line or a JSON key of any protocol.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import threading
from collections import Counter
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from .errors import InvalidInput, NotReady, ServingError
from .metrics.recorder import RequestRecorder
from .tracing import CURRENT_SPANS
from .repository.model import DeployedModel
from .repository.models import ModelRepository
from .scheduler.runner import Reply, Split, Ticket
from .types import Chunks, InferRequest, InferResponse

# Bodies larger than this are decoded on a codec thread, not on the event loop: the pure-Python
# path costs about 0.1 µs a byte, so a 16 KB body holds the loop under 2 ms whatever it carries
# (the loop-stall test in tests/adversarial/ sends the worst bodies of each kind).
OFF_LOOP_DECODE_BYTES = 16 * 1024
TIMEOUT_HEADER = "x-request-timeout"


def request_timeout(headers: dict[str, str], parameters: dict[str, Any], default: float) -> float:
    """Seconds this request may take: the ``timeout`` parameter or the X-Request-Timeout header
    (seconds), never longer than the server's limit when it has one."""
    # The parameter is the server's, not the model's: it is taken out so it does not split batches.
    value = parameters.pop("timeout", None)
    if value is None:
        value = headers.get(TIMEOUT_HEADER)
    if value is None:
        return default
    try:
        seconds = float(value)
    except OverflowError:  # an integer past the double range: as TF Serving reads numbers, ±inf
        seconds = math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        raise InvalidInput(f"timeout must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise InvalidInput(f"timeout must be positive, got {value!r}")
    return min(seconds, default) if default > 0 else seconds


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    state: str  # the lifecycle's: starting, loading, ready, failed, draining
    reason: str
    ready: bool


class DataPlane:
    def __init__(self, models: ModelRepository, *, request_timeout: float = 0.0, server_name: str = "hyperserve",
                 server_version: str = "", metrics: bool = True):
        self.models = models
        self.request_timeout = request_timeout
        self.server_name = server_name
        self.server_version = server_version
        self.draining = False
        self.cluster_ready: Callable[[], bool] | None = None  # with worker processes: are all ready?
        # One codec thread: a second would only compete with the loop for the GIL.
        self.codec_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec", initializer=_yield_to_loop)
        # Every answer over every protocol, told by the transports: counts by error status (a
        # client's mistake is a count, not a traceback in the log) and, with metrics on, latencies.
        self.recorder = RequestRecorder(timed=metrics)
        self.worker_metrics = None  # with metrics on: this worker's snapshot and scrape (server/metrics)

    @property
    def error_answers(self) -> Counter[int]:
        return self.recorder.error_answers

    # -- health ------------------------------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        """None when the server can serve every model; else why not."""
        if self.draining:
            return "the server is shutting down"
        for model in self.models:
            if not model.ready:
                return f"model '{model.name}' is {model.lifecycle.reason}"
        if self.cluster_ready is not None and not self.cluster_ready():
            return "waiting for the other worker processes to load"
        return None

    # -- models ------------------------------------------------------------------------------

    @property
    def default_model(self) -> DeployedModel:
        return self.models.default_model

    def model(self, name: str, version: str | None = None) -> DeployedModel:
        """The model by name (and version: the highest when None); NotFound otherwise."""
        return self.models.get(name, version or None)

    def model_ready(self, model: DeployedModel) -> bool:
        return model.ready and not self.draining

    def check_ready(self, model: DeployedModel) -> None:
        if self.draining:
            raise NotReady("the server is shutting down")
        if not model.ready:
            raise model.not_ready_error()

    def status(self, model: DeployedModel) -> ModelStatus:
        return ModelStatus(model.name, model.version, model.lifecycle.state.value, model.lifecycle.reason,
                           self.model_ready(model))

    def loaded(self, model: DeployedModel) -> DeployedModel:
        """The model, once its handler and signature exist (503 before)."""
        if model.signature is None:
            raise NotReady(f"model '{model.name}' is not loaded yet ({model.lifecycle.reason})")
        return model

    def statistics(self, model: DeployedModel) -> dict[str, Any]:
        runner = model.runner
        stats: dict[str, Any] = {"name": model.name, "version": model.version, "state": model.lifecycle.state.value}
        if runner is not None:
            stats.update(worker_pid=os.getpid(), queued=len(runner.queue), calls_in_flight=runner.busy,
                         batch_sizes=dict(sorted(runner.batch_sizes.items())))
        return stats

    # -- infer -------------------------------------------------------------------------------

    def prepare(self, infer_request: InferRequest, headers: dict[str, str]) -> InferRequest:
        """The request's headers and deadline (--request-timeout, or its own timeout)."""
        infer_request.headers = headers
        if infer_request.parameters or TIMEOUT_HEADER in headers:
            timeout = request_timeout(headers, infer_request.parameters, self.request_timeout)
        else:
            timeout = self.request_timeout
        if timeout > 0:
            infer_request.deadline = time.monotonic() + timeout
        return infer_request

    def submit(self, model: DeployedModel, infer_request: InferRequest, reply: Reply, split: Split) -> Ticket:
        """Queue a prepared request (the callback form of ``infer``, for the hot path): ``reply``
        gets its part of ``split``'s result, or its error, once, on the loop."""
        return model.runner.submit(infer_request, reply, split)

    async def infer(self, model: DeployedModel, infer_request: InferRequest,
                    headers: dict[str, str] | None = None) -> InferResponse:
        self.check_ready(model)
        if infer_request.trace is None:  # the answering request's span times, when it is traced
            infer_request.trace = CURRENT_SPANS.get()
        return await model.runner.infer(self.prepare(infer_request, headers or {}))

    async def next_chunk(self, model: DeployedModel, chunks: Chunks) -> bytes:
        """The next chunk of output the model makes while it is sent, made on its thread (b"": the end)."""
        return await model.runner.on_model_thread(chunks.next)

    async def close_chunks(self, model: DeployedModel, chunks: Chunks) -> None:
        await model.runner.on_model_thread(chunks.close)

    # -- codec work off the loop -----------------------------------------------------------------

    async def run_codec(self, work: Callable, body, *args):
        """``work(body, *args)``, on a codec thread when the body is large."""
        if len(body) > OFF_LOOP_DECODE_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self.codec_pool, without_collections, work,
                                                                    body, *args)
        return work(body, *args)

    def off_loop(self, work: Callable[[], Any], then: Callable[[Any], None],
                 failed: Callable[[BaseException], None]) -> None:
        """``work()`` on a codec thread, then ``then(result)`` (or ``failed(error)``) on the loop."""
        loop = asyncio.get_running_loop()

        def back_on_loop(job):
            try:
                result = job.result()
            except BaseException as err:  # noqa: BLE001 - answered, never lost
                failed(err)
                return
            then(result)

        self.codec_pool.submit(without_collections, work).add_done_callback(lambda job: loop.call_soon_threadsafe(back_on_loop, job))

    def close(self) -> None:
        self.codec_pool.shutdown(wait=False, cancel_futures=True)
        for model in self.models:
            if model.runner is not None:
                model.runner.close()
            if model.handler is not None:
                model.handler.close()


CODEC_NICENESS = 10


def _yield_to_loop() -> None:
    """The codec thread runs niced (Linux schedules threads one by one): when it and the event loop
    both want a core, the loop gets it, and so the GIL sooner after each switch interval."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CODEC_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: only the priority is lost
        pass


_collector_holds = 0
_collector_lock = threading.Lock()


def without_collections(work: Callable, *args) -> Any:
    """``work(*args)`` with the cycle collector paused. A large JSON body decodes into tens of
    thousands of lists and dicts with no cycles; each allocation burst would otherwise run the
    collector inside the parser's single C call, holding the GIL the event loop waits for."""
    global _collector_holds
    with _collector_lock:
        _collector_holds += 1
        if _collector_holds == 1:
            gc.disable()
    try:
        return work(*args)
    except ServingError as err:
        # Its traceback holds the decoder's frames and the document they parsed: drop it, so that
        # those objects are freed here, with the collector still paused, not later on the loop.
        err.__traceback__ = err.__context__ = err.__cause__ = None
        raise err from None
    finally:
        with _collector_lock:
            _collector_holds -= 1
            if _collector_holds == 0:
                gc.enable()


def failure_status(err: BaseException) -> tuple[int, str, dict[str, str]]:
    """(status, message, headers) for an exception that ends a request: a ServingError says what
    it is; anything else is a bug, a 500 that names only its type (the caller logs it)."""
    if isinstance(err, ServingError):
        return err.status, err.message, err.headers
    return 500, f"internal server error: {type(err).__name__}", {}
