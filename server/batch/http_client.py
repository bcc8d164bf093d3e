"""A small keep-alive HTTP/1.1 client for ``--endpoint``: POST a body, get (status, body, Retry-After).

Why not aiohttp: its Python cost per request was the job's bottleneck; with this client the same
job ran at 1.32 times the rows/s (bench/results/2026-12-02-vm-batch-endpoint-client.md).
Responses are parsed by httptools (llhttp), the parser the server itself uses; this module only
keeps the connections: one request at a time on each, at most ``size`` open, the rest queued in
order. ``send`` takes a callback, not a task, a future and a timer per request: the parser's
callback answers it and hands the connection to the next queued request, and one sweep per client
times requests out (the job's rows/s, 1.2 times those of a task and a semaphore per request:
bench/README.md).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Union
from urllib.parse import urlsplit

import httptools


# (status, body, seconds a Retry-After header asks for or None), or why there is none
Outcome = Union[tuple[int, bytes, Union[float, None]], Exception]
Reply = Callable[[Outcome], None]


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reply: Reply | None = None  # the request in flight's
        self.chunks: list[bytes] = []
        self.reusable = False
        self.lost = False
        self.framed = False  # Content-Length or chunked: else the body ends with the connection
        self.headers_done = False
        self.retry_after: bytes | None = None  # the response's Retry-After header
        self.sent_at = 0.0  # time.monotonic() of the request in flight

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.fail(ConnectionError(f"malformed HTTP response: {err}"))

    def connection_lost(self, exc) -> None:
        self.lost = True
        if exc is None and self.headers_done and not self.framed and self.reply is not None:
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        self.fail(ConnectionError(f"the connection closed before the response ended ({exc or 'EOF'})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding"):
            self.framed = True
        elif name == b"retry-after":
            self.retry_after = value

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = not self.lost and self.parser.should_keep_alive()
        self.framed = self.headers_done = False
        reply, self.reply = self.reply, None
        data, self.chunks = b"".join(self.chunks), []
        retry_after, self.retry_after = self.retry_after, None
        if reply is not None:
            reply((self.parser.get_status_code(), data, None if retry_after is None else seconds_after(retry_after)))

    def fail(self, err: Exception) -> None:
        self.reusable = False
        reply, self.reply = self.reply, None
        if reply is not None:
            reply(err)

    def exchange(self, request: bytes, reply: Reply) -> None:
        """Send ``request``; ``reply`` gets (status, body, Retry-After seconds), or the connection's
        failure, once."""
        self.reply = reply
        self.reusable = False
        if self.lost:
            self.fail(ConnectionError("the connection closed"))
        else:
            self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """POSTs to one URL over up to ``size`` keep-alive connections."""

    def __init__(self, url: str, *, size: int, timeout_s: float, headers: dict[str, str]):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--endpoint must be an http:// or https:// URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in ("host", "content-type")]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.timeout_s = timeout_s
        self.size = size
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()  # each with a request in flight
        self._opening = 0  # connections being opened
        self._queued: deque[tuple[bytes, Reply]] = deque()  # requests waiting for a connection
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    def send(self, body: bytes, reply: Reply) -> None:
        """POST ``body``; ``reply`` gets (status, body, Retry-After seconds or None), or the
        failure (ConnectionError, TimeoutError, OSError), once, on the loop. Sent now on an idle
        connection, else when one is free."""
        if self._closed:
            reply(ConnectionError("the client is closed"))
        elif self._idle and not self._queued:
            self._send(self._idle.pop(), body, reply)
        else:
            self._queued.append((body, reply))
            self._open_for_queue()

    async def post(self, body: bytes) -> tuple[int, bytes, float | None]:
        answer = asyncio.get_running_loop().create_future()
        self.send(body, lambda outcome: settle(answer, outcome))
        return await answer

    def _open_for_queue(self) -> None:
        while not self._closed and len(self._queued) > self._opening and \
                len(self._busy) + len(self._idle) + self._opening < self.size:
            self._opening += 1
            asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        try:
            connection = await self._connect()
        except (OSError, asyncio.TimeoutError) as err:
            self._opening -= 1
            if self._queued:  # the request first in line fails with it; the rest try again
                _, reply = self._queued.popleft()
                reply(err)
            self._open_for_queue()
            return
        self._opening -= 1
        self._next(connection)

    def _next(self, connection: _Connection) -> None:
        """A free connection: the next queued request goes on it, or it waits idle."""
        if self._queued and not self._closed:
            self._send(connection, *self._queued.popleft())
        elif self._closed:
            connection.close()
        else:
            self._idle.append(connection)

    def _send(self, connection: _Connection, body: bytes, reply: Reply) -> None:
        self._busy.add(connection)
        connection.sent_at = time.monotonic()
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._sweep_every(), self._time_out_late)
        connection.exchange(self._head + str(len(body)).encode() + b"\r\n\r\n" + body,
                            lambda outcome: self._done(connection, outcome, reply))

    def _done(self, connection: _Connection, outcome: Outcome, reply: Reply) -> None:
        self._busy.discard(connection)
        try:
            reply(outcome)
        finally:
            if type(outcome) is tuple and connection.reusable and not connection.lost:
                self._next(connection)
            else:  # failed, cut short or not to be reused: a late reply must reach no one
                connection.close()
                self._open_for_queue()

    def _sweep_every(self) -> float:
        return min(1.0, self.timeout_s / 4)

    def _time_out_late(self) -> None:
        """Fail the requests in flight longer than ``timeout_s``; again while any is in flight."""
        self._sweep = None
        due = time.monotonic() - self.timeout_s
        for connection in [c for c in self._busy if c.sent_at <= due]:
            connection.fail(asyncio.TimeoutError(f"no response within {self.timeout_s:g} s"))
        if self._busy:
            self._sweep = asyncio.get_running_loop().call_later(self._sweep_every(), self._time_out_late)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl,
                                   server_hostname=self.host if self.ssl else None), self.timeout_s)
        return connection

    def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
        while self._queued:
            _, reply = self._queued.popleft()
            reply(ConnectionError("the client is closed"))


def seconds_after(value: bytes) -> float | None:
    """A Retry-After value (delay-seconds or an HTTP-date, RFC 9110 10.2.3) → seconds from now;
    None when it is neither."""
    text = value.decode("latin-1").strip()
    if text.isascii() and text.isdigit():  # str.isdigit() also takes "²", which float() refuses
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def settle(future: asyncio.Future, outcome) -> None:
    """An outcome (a result, or an exception) onto ``future``, unless it is settled already."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
