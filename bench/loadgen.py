"""The load generator behind ``hyperserve bench``: keep-alive HTTP/1.1 connections on uvloop.

Closed loop (default): ``concurrency`` connections, each sends its next request as soon as the
previous answer arrives. Open loop (``rate``): requests are due at fixed or Poisson-spaced times
whatever the server does; a request that must wait for a free connection has its latency measured
from when it was due, so a stalled server cannot hide its stall (coordinated omission).

The hot path only appends integers to arrays; the HDR histogram is built when the run ends.
"""

from __future__ import annotations

import array
import asyncio
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import httptools


@dataclass
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// URLs are supported, got {url!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, path)


def build_request(target: Target, method: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    merged = {"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}}
    if body or method in ("POST", "PUT"):
        merged["content-length"] = str(len(body))
    else:
        merged.pop("content-type", None)
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RunStats:
    """Raw outcomes of one run: latencies in microseconds, status counts, errors."""

    latencies_us: array.array = field(default_factory=lambda: array.array("q"))
    status_codes: array.array = field(default_factory=lambda: array.array("H"))
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 1e-9)


class _Connection(asyncio.Protocol):
    def __init__(self, gen: LoadGenerator):
        self.gen = gen
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.due = 0  # perf_counter_ns the in-flight request was due (open loop) or sent
        self.busy = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.gen.failed(self, f"bad response: {err}")

    def on_message_complete(self):
        # The hot path of the whole tool: two appends and the next write.
        gen = self.gen
        now = time.perf_counter_ns()
        if gen.measuring:
            gen.record_latency((now - self.due) // 1000)
            gen.record_status(self.parser.get_status_code())
            if gen.total_requests is not None and len(gen.stats.latencies_us) >= gen.total_requests:
                gen.finish()
        if gen.closed_loop and not gen.stopping:
            self.due = now
            self.transport.write(gen.next_request())
        else:
            self.busy = False
            gen.dispatch(self)

    def connection_lost(self, exc):
        if self.busy:
            self.gen.failed(self, "connection closed by server")
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, request: bytes, due_ns: int):
        self.busy = True
        self.due = due_ns
        self.transport.write(request)


class LoadGenerator:
    def __init__(self, target: Target, requests: list[bytes], *, concurrency: int, duration: float | None,
                 total_requests: int | None = None, warmup: float = 0.0, rate: float | None = None,
                 arrival: str = "constant", timeout: float = 30.0,
                 on_progress: Callable[[float, int], None] | None = None, seed: int = 0):
        if duration is None and total_requests is None:
            raise ValueError("give a duration or a request count")
        self.target = target
        self.requests = requests
        self.concurrency = concurrency
        self.duration = duration
        self.total_requests = total_requests
        self.warmup = warmup
        self.rate = rate
        self.arrival = arrival
        self.timeout = timeout
        self.on_progress = on_progress
        self.rng = random.Random(seed)
        self.stats = RunStats()
        self.record_latency = self.stats.latencies_us.append
        self.record_status = self.stats.status_codes.append
        self.closed_loop = rate is None and total_requests is None
        self._next = 0
        self._idle: deque[_Connection] = deque()
        self._backlog: deque[int] = deque()  # open loop: due times waiting for a connection
        self.measuring = False
        self.stopping = False
        self._sent = 0
        self._done: asyncio.Future | None = None

    def next_request(self) -> bytes:
        request = self.requests[self._next]
        self._next = (self._next + 1) % len(self.requests)
        return request

    # -- callbacks from connections ---------------------------------------------------------------

    def failed(self, conn: _Connection, reason: str):
        if self.measuring:
            self.stats.errors[reason] += 1
        conn.busy = False
        if conn.transport is not None:
            conn.transport.close()

    def dispatch(self, conn: _Connection):
        if self.stopping:
            return
        if self.rate is None:
            self._send(conn, time.perf_counter_ns())
        elif self._backlog:
            self._send(conn, self._backlog.popleft())
        else:
            self._idle.append(conn)

    def _send(self, conn: _Connection, due_ns: int):
        if self.total_requests is not None and self.measuring:
            if self._sent >= self.total_requests:
                return
            self._sent += 1
        conn.send(self.next_request(), due_ns)

    def finish(self):
        if not self.stopping:
            self.stopping = True
            self.measuring = False
            self.stats.ended = time.perf_counter()
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    # -- the run ------------------------------------------------------------------------------

    async def _arrivals(self):
        """Open loop: make requests due on schedule, whatever the server is doing."""
        interval_ns = 1e9 / self.rate
        next_due = time.perf_counter_ns()
        while not self.stopping:
            now = time.perf_counter_ns()
            while next_due <= now and not self.stopping:
                due = int(next_due)
                conn = self._idle.popleft() if self._idle else None
                if conn is not None:
                    self._send(conn, due)
                else:
                    self._backlog.append(due)
                gap = self.rng.expovariate(self.rate) * 1e9 if self.arrival == "poisson" else interval_ns
                next_due += gap
            await asyncio.sleep(max(0.0, (next_due - time.perf_counter_ns()) / 1e9))

    async def run(self) -> RunStats:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        conns = []
        for _ in range(self.concurrency):
            _, conn = await loop.create_connection(lambda: _Connection(self), self.target.host, self.target.port)
            conns.append(conn)
        arrivals = loop.create_task(self._arrivals()) if self.rate else None
        for conn in conns:
            self.dispatch(conn)
        if self.warmup > 0:
            await asyncio.sleep(self.warmup)
        self.measuring = True
        self.stats.started = time.perf_counter()
        progress = loop.create_task(self._report_progress())
        try:
            if self.duration is not None:
                await asyncio.wait_for(asyncio.shield(self._done), self.duration)
            else:
                await self._done
        except TimeoutError:
            pass
        self.finish()
        progress.cancel()
        if arrivals is not None:
            arrivals.cancel()
        # Requests still due in the open-loop backlog never got a connection: their wait counts.
        end_ns = time.perf_counter_ns()
        for due in self._backlog:
            self.stats.latencies_us.append((end_ns - due) // 1000)
            self.stats.status_codes.append(0)  # 0: still waiting for a connection when the run ended
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*(c.closed for c in conns), return_exceptions=True)
        self.stats.statuses.update(self.stats.status_codes)
        return self.stats

    async def _report_progress(self):
        while self.on_progress is not None:
            await asyncio.sleep(0.5)
            self.on_progress(time.perf_counter() - self.stats.started, len(self.stats.latencies_us))


def run(generator: LoadGenerator) -> RunStats:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(generator.run())
    return uvloop.run(generator.run())
