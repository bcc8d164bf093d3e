"""A worker's metrics service: its snapshot written to the shared directory about once a second
(and at exit), and the scrape that merges every worker's (off the event loop)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from typing import Callable

from . import snapshot
from .exposition import render

log = logging.getLogger("hyperserve.metrics")

FLUSH_INTERVAL_S = 1.0


def shared_directory(configured: str) -> tuple[str, bool]:
    """(directory, made here): --metrics-dir (PROMETHEUS_MULTIPROC_DIR) emptied of an earlier
    run's files, or a new temporary one, which the caller removes at exit."""
    if configured:
        os.makedirs(configured, exist_ok=True)
        for name in os.listdir(configured):
            if name.endswith(".json") and name.startswith((snapshot.LIVE_PREFIX, snapshot.DEAD_PREFIX)):
                os.unlink(os.path.join(configured, name))
        return configured, False
    return tempfile.mkdtemp(prefix="hyperserve-metrics-"), True


def remove_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class WorkerMetrics:
    def __init__(self, plane, directory: str | None):
        self.plane = plane
        self.directory = directory  # None: one process, nothing to share
        self.connections: Callable[[], int] = lambda: 0  # the HTTP server's, once it exists
        self._timer: asyncio.TimerHandle | None = None
        self._writing = False

    def snapshot(self) -> dict:
        return snapshot.worker_snapshot(self.plane, self.plane.recorder, self.connections())

    async def scrape(self) -> bytes:
        own = self.snapshot()  # read on the loop, where the numbers change
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: render(snapshot.merge(snapshot.read_all(self.directory, own))))

    # -- the periodic snapshot ----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.directory:
            self._timer = loop.call_later(FLUSH_INTERVAL_S, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(FLUSH_INTERVAL_S, self._flush, loop)
        if self._writing:  # a slow disk: skip a beat rather than queue writes
            return
        self._writing = True
        own = self.snapshot()

        def write():
            try:
                snapshot.write(self.directory, own)
            except OSError as err:
                log.warning("cannot write metrics to %s: %s", self.directory, err)
            finally:
                self._writing = False

        loop.run_in_executor(None, write)

    def stop(self) -> None:
        """The last snapshot, so that what this worker counted outlives it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.directory:
            try:
                snapshot.write(self.directory, self.snapshot())
            except OSError as err:
                log.warning("cannot write metrics to %s: %s", self.directory, err)
