"""Process isolation: a handler run in child processes instead of the server's threads.

For pure-Python handlers (``--isolation process``): their work runs in parallel across
processes instead of queueing for the GIL, and a handler that crashes its process (a segfault in
an extension, ``os._exit``) fails only the request in flight; the process is started again and
the server keeps serving. Inputs and outputs are pickled to and from the child, so this suits
handlers whose per-call compute outweighs copying their data.
"""

from __future__ import annotations

import multiprocessing
import queue
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from hyperserve.handlers.base import Handler, HandlerConfig

from ..errors import ModelError, ServingError
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
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _load_in_child(framework: str, artifact: str, config: HandlerConfig) -> None:
    global _handler
    from hyperserve.handlers import registry

    _die_with_parent()
    handler = registry.load_class(framework)()
    handler.load(Path(artifact), config)
    _handler = handler


def _describe_in_child() -> tuple[Signature, dict[str, Any]]:
    return _handler.signature(), _handler.describe()


def _predict_in_child(inputs, batch_size, parameters, signature_name, headers, raw):
    response = _handler.predict(InferRequest(inputs=inputs, batch_size=batch_size, parameters=parameters,
                                             signature_name=signature_name, headers=headers, raw=raw))
    return response.outputs, response.metadata


class IsolatedHandler(Handler):
    """Looks like the wrapped handler to the scheduler; each call runs in one of ``processes``
    child processes (one call at a time each), chosen by whichever is free."""

    name = "isolated"
    releases_gil = True  # the work happens in other processes

    def __init__(self, cls: type[Handler], framework: str, processes: int):
        if cls.takes_request:
            raise ServingError(f"--isolation process does not apply to {framework} models (a CPR predictor "
                               "runs one call at a time on its own thread); use --workers for more processes")
        self.cls = cls
        self.framework = framework
        self.processes = max(1, processes)
        self.batchable = cls.batchable
        self.accepts_raw = cls.accepts_raw
        self.batches_raw = cls.batches_raw
        self.takes_rows = cls.takes_rows

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        self._args = (self.framework, str(artifact), config)
        self._context = multiprocessing.get_context("spawn")  # no threads or locks inherited
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._pools = [self._start() for _ in range(self.processes)]
        try:  # every child loads before the model is ready; the first answer gives the signature
            described = [pool.submit(_describe_in_child).result() for pool in self._pools]
        except BrokenProcessPool as err:
            self.close()
            raise ServingError(f"the model's process died while loading: {err}") from err
        except Exception:
            self.close()
            raise
        self._signature, self._description = described[0]
        for pool in self._pools:
            self._free.put(pool)

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_load_in_child,
                                   initargs=self._args)

    def signature(self) -> Signature:
        return self._signature

    def signature_named(self, name: str) -> Signature:
        return self._signature

    def describe(self) -> dict[str, Any]:
        return {**self._description, "isolation": f"{self.processes} process(es)"}

    def predict(self, request: InferRequest) -> InferResponse:
        raw = request.raw
        if raw is not None and not isinstance(raw.data, bytes):  # a view over the request: copy it
            raw = RawBody(raw.content_type, bytes(raw.data))
        pool = self._free.get()
        try:
            future = pool.submit(_predict_in_child, request.inputs, request.batch_size, request.parameters,
                                 request.signature_name, dict(request.headers), raw)
            outputs, metadata = future.result()
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
