"""Process isolation: a handler run in child processes instead of the server's threads.

For pure-Python handlers (``--isolation process``): their work runs in parallel across
processes instead of queueing for the GIL, and a handler that crashes its process (a segfault in
an extension, ``os._exit``) fails only the request in flight; the process is started again and
the server keeps serving. Inputs and outputs are pickled to and from the child, so this suits
handlers whose per-call compute outweighs copying their data.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperserve.handlers.base import Capabilities, Handler, HandlerConfig, Inputs

from ..errors import InvalidInput, ModelError, ServingError
from ..types import InferRequest, InferResponse, RawBody, Signature

_handler: Handler | None = None  # in a child: the loaded handler


def _die_with_parent() -> None:
    """The child exits when the server process is gone, however it went (PR_SET_PDEATHSIG would
    follow the thread that started the child, not the process)."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        _close_and_exit()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _close_and_exit(*_signal) -> None:
    """The handler's close (a TorchServe archive's extraction is removed), then exit: on SIGTERM
    from the parent's close, or when the parent is gone."""
    import os

    handler = _handler
    if handler is not None:
        try:
            handler.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(0)


def _load_in_child(framework: str, artifact: str, config: HandlerConfig) -> None:
    global _handler
    from hyperserve.handlers import registry

    import signal

    _die_with_parent()
    signal.signal(signal.SIGTERM, _close_and_exit)
    handler = registry.load_class(framework)()
    handler.load(Path(artifact), config)
    _handler = handler


@dataclass(frozen=True)
class Described:
    """What the scheduler and the protocols read from a loaded handler, sent back once from a
    child: the parent answers these without a round trip."""

    signature: Signature
    description: dict[str, Any]
    capabilities: Capabilities
    signatures: dict[str, Signature]  # by name, for named_signatures handlers
    methods: dict[str, str]  # signature name → TF Serving method_name
    signature_defs: dict[str, Any]
    queue_delay_s: float | None


def _describe_in_child() -> Described:
    handler = _handler
    names = handler.signature_names()
    return Described(handler.signature(), handler.describe(), handler.capabilities,
                     {name: handler.signature_named(name) for name in names},
                     {name: handler.signature_method(name) for name in names},
                     handler.signature_defs(), handler.queue_delay_s())


def _predict_in_child(request: InferRequest, parts: list[tuple[int, dict[str, str], int]] | None):
    if parts is not None:  # a batch: each request's size, headers and id (TorchServe's request ids)
        request.parts = [InferRequest({}, size, headers=headers, id=ident) for size, headers, ident in parts]
    response = _handler.predict(request)
    return response.outputs, response.metadata


class IsolatedHandler(Handler):
    """Looks like the wrapped handler to the scheduler and the protocols (every capability and
    signature is forwarded); each call runs in one of ``processes`` child processes (one call at a
    time each), chosen by whichever is free."""

    name = "isolated"

    def __init__(self, cls: type[Handler], framework: str, processes: int):
        if cls.capabilities.inputs is Inputs.REQUEST:
            raise ServingError(f"--isolation process does not apply to {framework} models (a CPR predictor "
                               "runs one call at a time on its own thread); use --workers for more processes")
        self.cls = cls
        self.framework = framework
        self.processes = max(1, processes)

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        self._args = (self.framework, str(artifact), config)
        self._context = multiprocessing.get_context("spawn")  # no threads or locks inherited
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._pools = [self._start() for _ in range(self.processes)]
        try:  # every child loads before the model is ready; the first answer describes the model
            described = [pool.submit(_describe_in_child).result() for pool in self._pools]
        except BrokenProcessPool as err:
            self.close()
            raise ServingError(f"the model's process died while loading: {err}") from err
        except Exception:
            self.close()
            raise
        self._described = described[0]
        # Each child runs one call at a time, so this object may be called from one thread per
        # child; the work happens in other processes, so nothing here holds the GIL for long.
        self.capabilities = dataclasses.replace(self._described.capabilities, thread_safe=True,
                                                releases_gil=True, runs_inline=False, fork_safe=False)
        for pool in self._pools:
            self._free.put(pool)

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_load_in_child,
                                   initargs=self._args)

    def signature(self) -> Signature:
        return self._described.signature

    def signature_named(self, name: str) -> Signature:
        described = self._described
        if not described.capabilities.named_signatures:
            return described.signature
        signature = described.signatures.get(name)
        if signature is None:
            raise InvalidInput(f"Serving signature name: \"{name}\" not found in signature def "
                               f"(the model has {sorted(described.signatures)})")
        return signature

    def signature_names(self) -> list[str]:
        return list(self._described.signatures)

    def signature_method(self, name: str) -> str:
        self.signature_named(name)
        return self._described.methods.get(name) or super().signature_method(name)

    def signature_defs(self) -> dict[str, Any]:
        return self._described.signature_defs

    def queue_delay_s(self) -> float | None:
        return self._described.queue_delay_s

    def describe(self) -> dict[str, Any]:
        return {**self._described.description, "isolation": f"{self.processes} process(es)"}

    def predict(self, request: InferRequest) -> InferResponse:
        raw = request.raw
        if raw is not None and not isinstance(raw.data, bytes):  # a view over the request: copy it
            raw = RawBody(raw.content_type, bytes(raw.data))
        # Every per-request field crosses, not only the tensors; the batch's own requests go as
        # (size, headers, id), without their inputs, which are already in the concatenated batch.
        sent = InferRequest(request.inputs, request.batch_size, parameters=request.parameters,
                            headers=dict(request.headers), raw=raw, id=request.id, deadline=request.deadline,
                            signature_name=request.signature_name, unbatched=request.unbatched)
        parts = None if request.parts is None else [(p.batch_size, dict(p.headers), p.id) for p in request.parts]
        pool = self._free.get()
        try:
            outputs, metadata = pool.submit(_predict_in_child, sent, parts).result()
        except BrokenProcessPool:
            broken, pool = pool, self._start()  # the new process loads the model on its first call
            broken.shutdown(wait=False, cancel_futures=True)
            self._pools[self._pools.index(broken)] = pool
            raise ModelError("the model's process died during this call; it has been restarted") from None
        finally:
            self._free.put(pool)
        return InferResponse(outputs, metadata)

    def close(self) -> None:
        for pool in getattr(self, "_pools", []):
            processes = list(getattr(pool, "_processes", {}).values())  # the executor keeps no public list
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
