"""The listening socket, the set of live connections, and graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Callable

from ..metrics.recorder import RequestRecorder
from .messages import Request, Response
from .protocol import _PHASE_TIMEOUT, HttpProtocol


@dataclass
class Limits:
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 100 * 1024 * 1024
    header_timeout: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout: float = 60.0  # from the end of the headers to the end of the body
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    max_pipelined: int = 32  # requests waiting on one connection before reading pauses
    max_pipelined_bytes: int = 4 * 1024 * 1024  # request bytes waiting on one connection before reading pauses
    linger_timeout: float = 2.0  # after an error answer, how long to drain the peer's unread data
    send_timeout: float = 60.0  # how long a peer may leave our answers unread (our buffer full) before we close
    app_timeout: float = 0.0  # a request inside the app longer than this is answered 504 (0: no limit)


App = Callable[[Request], "Response | asyncio.Future[Response]"]


class HttpServer:
    def __init__(self, app: App, limits: Limits | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 recorder: RequestRecorder | None = None):
        self.app = app
        # Told of every answer, once (metrics, the access log, error counts).
        self.recorder = recorder if recorder is not None else RequestRecorder(timed=False)
        self.answered = self.recorder.answered
        # enter(request) → token before a request's route runs, exit(token) after (logs' trace, spans).
        self.tracing = None
        self.limits = limits or Limits()
        self.loop = loop or asyncio.get_event_loop()
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        # Phase → seconds (0: none), read on every request by the connections.
        self.phase_timeouts = {phase: float(getattr(self.limits, attr) or 0) if attr else 0.0
                               for phase, attr in _PHASE_TIMEOUT.items()}
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False, backlog: int = 2048) -> int:
        """Bind and listen at once; returns the bound port (useful with port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        self._server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=backlog)
        self._sweeper = self.loop.call_later(self.SWEEP_INTERVAL, self._sweep)
        return sock.getsockname()[1]

    SWEEP_INTERVAL = 0.5

    def _sweep(self):
        """Enforce each connection's current deadline (header, body or keep-alive)."""
        now = self.loop.time()
        for conn in list(self.connections):
            conn.check_deadline(now)
        self._sweeper = self.loop.call_later(self.SWEEP_INTERVAL, self._sweep)

    async def shutdown(self, grace_period: float) -> bool:
        """Refuse new connections, let owed responses out, close. True if all finished in time."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = self.loop.time() + grace_period
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        clean = not self.connections
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        return clean
