"""The request a route receives and the response it returns, and their wire encoding."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from http import HTTPStatus

import orjson

_clock = time.perf_counter
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}

_date_cache: list = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


class Request:
    """One parsed HTTP request. Header names are lower-case; repeated headers are joined by ', '."""

    # started: time.perf_counter() when it was whole; profile and model: the protocol profile that
    # routed it and the deployed model it addressed, set by the router and the profile (metrics' labels).
    # trace: with tracing on, the SpanTimes its spans are made from (server/tracing.py).
    __slots__ = ("method", "path", "query", "headers", "body", "http_version", "keep_alive", "started", "profile",
                 "model", "trace")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str],
                 body: bytes, http_version: str, keep_alive: bool):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.started = _clock()
        self.profile = ""
        self.model = None
        self.trace = None

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ('' when absent)."""
        value = self.headers.get("content-type", "")
        if value == "application/json":  # the usual value, already in canonical form
            return value
        return value.split(";", 1)[0].strip().lower()


class BodyStream:
    """A body sent while it is made: the chunks ``next_chunk`` gives (b"" when it ends), sent
    chunked to an HTTP/1.1 client, until the close to an HTTP/1.0 one. ``close`` runs once,
    when the body ends, fails or its client goes away."""

    async def next_chunk(self) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Response:
    """``body``: bytes, or a BodyStream (the transport then sends no content-length)."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str = "application/json",
                 headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    @classmethod
    def json(cls, obj, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, orjson.dumps(obj), "application/json", headers)

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return cls(status, orjson.dumps({"error": message}), "application/json", headers)

    def encode_head(self, *, head_only_length: int | None = None, connection: bytes = b"",
                    chunked: bool = True) -> bytes:
        """Status line and headers. ``connection`` is b'close', b'keep-alive' or b''. A streamed
        body is ``chunked``, or else ended by the close (HTTP/1.0)."""
        if isinstance(self.body, BodyStream):
            return _format_head(self.status, self.content_type, None, connection, _date_header(), self.headers,
                                chunked=chunked)
        length = len(self.body) if head_only_length is None else head_only_length
        if self.headers:
            return _format_head(self.status, self.content_type, length, connection, _date_header(), self.headers)
        return plain_head(self.status, self.content_type, length, connection)


class Deferred:
    """A response that a route will give later, through ``resolve``, on the event loop. The
    connection waits on it with one callback: cheaper than a task per request on the hot path.
    ``cancel`` (the client went away) drops the answer and runs ``on_cancel``."""

    __slots__ = ("_callback", "_response", "_cancelled", "on_cancel")

    def __init__(self):
        self._callback = None
        self._response: Response | None = None
        self._cancelled = False
        self.on_cancel = None

    def then(self, callback) -> None:
        if self._response is not None:
            callback(self._response)
        else:
            self._callback = callback

    def resolve(self, response: Response) -> None:
        if self._cancelled or self._response is not None:
            return
        self._response = response
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(response)

    def __await__(self):  # for callers outside the transport (tests, tools): ``await deferred``
        future = asyncio.get_running_loop().create_future()
        self.then(future.set_result)
        return future.__await__()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
        self._callback = None
        if self.on_cancel is not None:
            self.on_cancel()


# Final statuses a response may carry with a body; 204 and 304 must have none.
PLAIN_STATUSES = frozenset(range(200, 600)) - {204, 304}
PLAIN_TYPES = frozenset(("application/json", "application/octet-stream", "text/plain; charset=utf-8", ""))
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _field_value_problem(value) -> str | None:
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "has characters outside latin-1"
    if any(c in value for c in "\r\n\0"):
        return "has a line break or NUL"
    return None


def response_problem(response: Response) -> str | None:
    """What makes a response unsendable (a handler's status, media type or headers), or None.
    Checked once, by the transport, for every response a route gives."""
    if response.headers is None and response.status in PLAIN_STATUSES and response.content_type in PLAIN_TYPES \
            and type(response.status) is int:
        return None  # the usual response: nothing to check
    status = response.status
    if type(status) is not int or not 200 <= status <= 599:
        return f"status {status!r} is not a final HTTP status (200-599)"
    if status in (204, 304) and response.body:
        return f"status {status} cannot carry a body ({len(response.body)} bytes given)"
    if not isinstance(response.body, (bytes, bytearray, memoryview, BodyStream)):
        return f"body is a {type(response.body).__name__}, not bytes"
    problem = _field_value_problem(response.content_type)
    if problem:
        return f"content type {response.content_type!r} {problem}"
    for name, value in (response.headers or {}).items():
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            return f"header name {name!r} is not an HTTP token"
        problem = _field_value_problem(value)
        if problem:
            return f"header {name!r} {problem}"
    return None


_head_cache: dict[tuple, bytes] = {}
_head_cache_date: list = [None]


def plain_head(status: int, content_type: str, length: int, connection: bytes = b"") -> bytes:
    """The head of a response without extra headers. Such heads repeat (same status, type,
    length), so they are cached; the cache lives as long as its Date, one second."""
    date = _date_header()
    if _head_cache_date[0] is not date:
        _head_cache.clear()
        _head_cache_date[0] = date
    key = (status, content_type, length, connection)
    head = _head_cache.get(key)
    if head is None:
        head = _head_cache[key] = _format_head(status, content_type, length, connection, date, None)
    return head


def _format_head(status: int, content_type: str, length: int | None, connection: bytes, date: bytes,
                 headers: dict[str, str] | None, chunked: bool = False) -> bytes:
    """``length`` None: a streamed body, chunked or (``chunked`` False) delimited by the close."""
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    ct_line = b"content-type: " + content_type.encode("latin-1") + b"\r\n" if content_type else b""
    if length is not None:
        framing = b"content-length: %d\r\n" % length
    else:
        framing = b"transfer-encoding: chunked\r\n" if chunked else b""
    head = b"%s%sserver: hyperserve\r\n%s%s" % (status_line, date, ct_line, framing)
    if headers:
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
    if connection:
        head += b"connection: " + connection + b"\r\n"
    return head + b"\r\n"

