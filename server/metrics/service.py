"""A worker's metrics service: its snapshot written to the shared directory about once a second
(and at exit), and the scrape that merges every worker's (off the event loop).

A scrape writes its own snapshot before it reads the others'. Without that, a scrape answered by
worker A (its numbers now, B's from up to a second ago) could be followed by one answered by B
(B's now, A's older) that shows less: Prometheus reads a counter that went down as a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
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
        # Writes run on executor threads: a slow one must not put an older snapshot over a newer.
        self._write_lock = threading.Lock()
        self._taken = self._written = 0

    def snapshot(self) -> tuple[int, dict]:
        """(its sequence number, this worker's numbers now); read on the loop, where they change."""
        self._taken += 1
        return self._taken, snapshot.worker_snapshot(self.plane, self.plane.recorder, self.connections())

    def _write(self, taken: int, own: dict) -> None:
        with self._write_lock:
            if taken <= self._written:
                return
            try:
                snapshot.write(self.directory, own)
                self._written = taken
            except OSError as err:
                log.warning("cannot write metrics to %s: %s", self.directory, err)

    async def scrape(self) -> bytes:
        taken, own = self.snapshot()

        def merged() -> bytes:
            if self.directory:
                self._write(taken, own)
            return render(snapshot.merge(snapshot.read_all(self.directory, own)))

        return await asyncio.get_running_loop().run_in_executor(None, merged)

    # -- the periodic snapshot ----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.directory:
            self._timer = loop.call_later(FLUSH_INTERVAL_S, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(FLUSH_INTERVAL_S, self._flush, loop)
        if self._writing:  # a slow disk: skip a beat rather than queue writes
            return
        self._writing = True
        taken, own = self.snapshot()

        def write():
            try:
                self._write(taken, own)
            finally:
                self._writing = False

        loop.run_in_executor(None, write)

    def stop(self) -> None:
        """The last snapshot, so that what this worker counted outlives it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.directory:
            self._write(*self.snapshot())
