"""A small keep-alive HTTP/1.1 client for ``--endpoint``: POST a body, get (status, body).

Why not aiohttp: its Python cost per request was the job's bottleneck; with this client the same
job ran at 1.32 times the rows/s (bench/results/2026-12-02-vm-batch-endpoint-client.md).
Responses are parsed by httptools (llhttp), the parser the server itself uses; this module only
keeps the connections: one request at a time on each, at most ``size`` open.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.chunks: list[bytes] = []
        self.reusable = False
        self.lost = False
        self.framed = False  # Content-Length or chunked: else the body ends with the connection
        self.headers_done = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ConnectionError(f"malformed HTTP response: {err}"))

    def connection_lost(self, exc) -> None:
        self.lost = True
        if exc is None and self.headers_done and not self.framed and self.waiter is not None:
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        self._fail(ConnectionError(f"the connection closed before the response ended ({exc or 'EOF'})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = not self.lost and self.parser.should_keep_alive()
        self.framed = self.headers_done = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))
        self.chunks = []

    def _fail(self, err: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def exchange(self, request: bytes) -> asyncio.Future:
        """Send ``request``; the future gets (status, body), or the connection's failure."""
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.reusable = False
        if self.lost:
            waiter.set_exception(ConnectionError("the connection closed"))
        else:
            self.transport.write(request)
        return waiter

    def time_out(self, seconds: float) -> None:
        self._fail(asyncio.TimeoutError(f"no response within {seconds:g} s"))

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
        self._idle: list[_Connection] = []
        self._gate = asyncio.Semaphore(size)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        async with self._gate:
            connection = self._idle.pop() if self._idle else await self._connect()
            # A timer, not asyncio.wait_for: that costs a task per request, a share of the job's CPU.
            timer = asyncio.get_running_loop().call_later(self.timeout_s, connection.time_out, self.timeout_s)
            try:
                status, data = await connection.exchange(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
            except BaseException:
                connection.close()
                raise
            finally:
                timer.cancel()
            if connection.reusable and not connection.lost:
                self._idle.append(connection)
            else:
                connection.close()
            return status, data

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl,
                                   server_hostname=self.host if self.ssl else None), self.timeout_s)
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
