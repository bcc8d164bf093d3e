"""One HTTP/1.1 connection: parse with httptools, hand whole requests to the app, write in order.

Rules this file keeps:
- Responses leave in the order their requests arrived (pipelining); at most one request of a
  connection is inside the app at a time, later ones wait in ``_pipeline``.
- At any moment one deadline guards the connection, chosen by its phase (the table below); while
  the peer leaves our answers unread, a send deadline runs too. No phase is without a limit.
- Reading pauses while the peer does not read our writes, or while too many requests (or request
  bytes) wait: one connection never buffers more than those bounds plus one answer.
- A protocol error answers 400 (or 413/431/408) after the responses already owed, then closes.
- Whole simple requests (the usual case) are parsed by the native fast path in one call; whatever
  it declines, and everything after that in the same read, goes to httptools. It only runs while
  httptools is between messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from ..native import native
from .messages import (PLAIN_STATUSES, PLAIN_TYPES, BodyStream, Deferred, Request, Response, plain_head,
                       response_problem)

if TYPE_CHECKING:
    from .server import HttpServer

log = logging.getLogger("hyperserve.http")

# Phase of the connection → which limit's timeout applies (None: no timer runs).
IDLE, HEADERS, BODY, WAITING_APP, STREAMING, LINGER = "idle", "headers", "body", "waiting_app", "streaming", "linger"
_PHASE_TIMEOUT = {
    IDLE: "keepalive_timeout",
    HEADERS: "header_timeout",
    BODY: "body_timeout",
    WAITING_APP: "app_timeout",  # a backstop behind the data plane's own request deadline
    STREAMING: "app_timeout",  # from the last chunk of a streamed body to its next
    LINGER: "linger_timeout",  # after an error answer: drain what the peer still sends, then close
}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_closing_streams: set[asyncio.Task] = set()
# A body at least this large (by its Content-Length) is written into one bytes object as it
# arrives, instead of kept as chunks and joined: its peak is then once its size, not twice.
_FILL_IN_PLACE_BYTES = 1024 * 1024
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "expect"))


def _split_target(target: bytes) -> tuple[str, str]:
    """Request target → (decoded path, raw query). Absolute-form targets keep only their path."""
    if not target.startswith(b"/"):
        if target == b"*":
            return "*", ""
        parsed = httptools.parse_url(target)
        path_bytes, query_bytes = parsed.path or b"/", parsed.query or b""
    else:
        path_bytes, _, query_bytes = target.partition(b"?")
        query_bytes = query_bytes.partition(b"#")[0]
    path = path_bytes.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    return path, query_bytes.decode("latin-1")


class _ProtocolError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class HttpProtocol(asyncio.Protocol):
    def __init__(self, server: HttpServer):
        self.server = server
        self.app = server.app
        self.limits = server.limits
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._pipeline: deque[Request | Response] = deque()
        self._in_app = False  # a request of this connection is inside the app
        self._task: asyncio.Task | None = None  # the app's awaitable answer, or
        self._deferred: Deferred | None = None  # its callback-style answer
        self._deferred_request: Request | None = None  # the request that answer is for
        self._app_request: Request | None = None  # the request inside the app (or whose body streams)
        self._writable: asyncio.Future | None = None  # a streamed body waits on it while writing is paused
        self.deadline: float | None = None
        self.send_deadline: float | None = None  # set while our answers sit unread in the buffer
        self._queued_bytes = 0  # body bytes of the requests waiting in _pipeline
        self._write_paused = False
        self._read_paused = False
        self._closing = False  # no further requests are read; close once owed responses are out
        self._linger = False  # the close follows an error: half-close and drain so the answer is not reset
        self._phase = IDLE
        self._between_messages = True  # httptools holds no part of a message
        self._fast_parse = native.parse_request if native is not None else None
        self._max_header_bytes, self._max_body_bytes = self.limits.max_header_bytes, self.limits.max_body_bytes
        self._reset_message()

    # -- connection events -------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.add(self)
        if self.server.draining:
            transport.close()
            return
        self._set_phase(HEADERS)

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        self._cancel_timer()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self._pipeline.clear()
        self.transport = None

    def data_received(self, data: bytes):
        if self._closing:
            return  # after an error or "Connection: close" the rest of the stream is discarded
        fast_parse = self._fast_parse
        if self._between_messages and fast_parse is not None:
            # Whole simple requests at the start of ``data`` are served from one native call each.
            offset, size = 0, len(data)
            max_header, max_body = self._max_header_bytes, self._max_body_bytes
            while offset < size:
                parsed = fast_parse(data, offset, max_header, max_body)
                if parsed is None:
                    break
                method, path, query, headers, body, offset, keep_alive = parsed
                self._on_request(Request(method, path, query, headers, body, "1.1", keep_alive))
                if self._closing:
                    return
            if offset:
                if offset == size:
                    return
                data = data[offset:]
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades: what was parsed is served, the rest of the stream is not HTTP/1.1.
            self._closing = True
            self._maybe_close()
        except httptools.HttpParserError as err:
            # httptools wraps an exception raised in a callback; ours carry their own status.
            cause = err.__context__
            if isinstance(cause, _ProtocolError):
                self._fail(cause.status, cause.message)
            else:
                self._fail(400, f"malformed HTTP request: {err}")

    def eof_received(self):
        """The peer half-closed: answer what it already sent, then close."""
        self._closing = True
        if self._in_app or self._pipeline:
            return True
        return False

    def pause_writing(self):
        self._write_paused = True
        timeout = self.limits.send_timeout
        self.send_deadline = self.loop.time() + timeout if timeout else None
        self._update_reading()

    def resume_writing(self):
        self._write_paused = False
        self.send_deadline = None
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None
        if not self._in_app and self._pipeline:
            self._run_pipeline()
        self._update_reading()

    # -- parser callbacks (called from feed_data) ------------------------------------------

    def _reset_message(self):
        self._url = b""
        self._headers: dict[str, str] = {}
        self._repeated: dict[str, list[str]] | None = None  # values of repeated headers, joined at the end
        self._header_bytes = 0
        self._has_length = self._has_chunked = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._length = -1  # the Content-Length, when given
        self._body_target: bytes | None = None  # a large body, filled in place as it arrives
        self._expect_continue = False

    def on_message_begin(self):
        self._between_messages = False
        self._set_phase(HEADERS)  # the message state was reset when the previous one completed

    def on_url(self, url: bytes):
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            raise _ProtocolError(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes):
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            raise _ProtocolError(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        if key in headers:
            # Collected and joined once the headers are complete: joining as they come would copy
            # the value so far for every repeat, quadratic in a head of many same-named headers.
            repeated = self._repeated
            if repeated is None:
                repeated = self._repeated = {}
            values = repeated.get(key)
            if values is None:
                repeated[key] = [headers[key], text]
            else:
                values.append(text)
        else:
            headers[key] = text
        if key not in _FRAMING_HEADERS:
            return
        if key == "content-length":
            self._has_length = True
            try:
                length = int(text)
            except ValueError:
                raise _ProtocolError(400, "invalid Content-Length") from None
            if length > self.limits.max_body_bytes:
                raise _ProtocolError(
                    413, f"request body of {length} bytes exceeds the limit of {self.limits.max_body_bytes}")
            self._length = length
        elif key == "transfer-encoding":
            self._has_chunked = True
        elif key == "expect" and text.lower() == "100-continue":
            self._expect_continue = True

    def on_headers_complete(self):
        if self._repeated:
            for key, values in self._repeated.items():
                self._headers[key] = ", ".join(values)
        if self._has_length and self._has_chunked:
            raise _ProtocolError(400, "both Content-Length and Transfer-Encoding are present")
        if self._length >= _FILL_IN_PLACE_BYTES and native is not None:
            self._body_target = native.bytes_of_size(self._length)
        self._set_phase(BODY)
        if self._expect_continue and not self._in_app and not self._pipeline and self.transport:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes):
        offset = self._body_size
        self._body_size += len(body)
        if self._body_size > self.limits.max_body_bytes:
            raise _ProtocolError(413, f"request body exceeds the limit of {self.limits.max_body_bytes} bytes")
        if self._body_target is not None:
            native.write_into(self._body_target, offset, body)
        else:
            self._body.append(body)

    def on_message_complete(self):
        self._between_messages = True
        if self._closing:
            return  # pipelined after a "Connection: close" request or a protocol error: not ours to answer
        url = self._url
        if url[:1] == b"/" and b"?" not in url and b"%" not in url:
            path, query = url.decode("latin-1"), ""
        else:
            path, query = _split_target(url)
        bodies = self._body
        parser = self.parser
        if self._body_target is not None:
            body = self._body_target
        else:
            body = bodies[0] if len(bodies) == 1 else b"".join(bodies)
        request = Request(parser.get_method().decode("ascii"), path, query, self._headers, body,
                          parser.get_http_version(), parser.should_keep_alive())
        self._reset_message()
        self._on_request(request)

    def _on_request(self, request: Request):
        """A whole request arrived: run it now, or queue it behind the one in the app."""
        if not request.keep_alive:
            self._closing = True  # nothing after a "Connection: close" request is read
        if self._in_app or self._pipeline or self._write_paused:
            self._pipeline.append(request)
            self._queued_bytes += len(request.body)
            if not self._in_app:
                self._phase, self.deadline = WAITING_APP, None  # the send deadline guards it
            self._update_reading()
            return
        self._dispatch(request)
        if not self._in_app:
            if self._closing:
                self._maybe_close()
            else:
                self._set_phase(IDLE)

    # -- running requests in order ---------------------------------------------------------

    def _dispatch(self, request: Request):
        """Run one request through the app: write a synchronous answer now, else await it."""
        tracing = self.server.tracing
        token = tracing.enter(request) if tracing is not None else None
        try:
            result = self.app(request)
        except Exception as err:  # the app must never take the connection down
            log.exception("unhandled error in route for %s %s", request.method, request.path)
            result = Response.error(500, f"internal server error: {type(err).__name__}")
        finally:
            if tracing is not None:
                tracing.exit(token)
        if type(result) is Response:
            if result.headers is not None or result.status not in PLAIN_STATUSES \
                    or result.content_type not in PLAIN_TYPES:
                result = self._sendable(result, request)
            self._write(result, request)
            return
        self._in_app = True
        self._app_request = request
        self._set_phase(WAITING_APP)
        if type(result) is Deferred:
            self._deferred = result
            self._deferred_request = request
            result.then(self._deferred_done)
        else:
            self._task = self.loop.create_task(self._await_app(request, result))

    def _run_pipeline(self):
        """Answer queued requests in order, until one has to be awaited or writing pauses."""
        while self._pipeline and not self._in_app and not self._write_paused and self.transport is not None:
            item = self._pipeline.popleft()
            if type(item) is Response:  # a protocol error owed after earlier responses
                self._write(item, None)
            else:
                self._queued_bytes -= len(item.body)
                self._dispatch(item)
        self._update_reading()
        if not self._in_app and not self._pipeline:
            self._maybe_close()
            if self.transport is not None and not self._closing and not self._partial_message():
                self._set_phase(IDLE)

    async def _await_app(self, request: Request, awaitable):
        try:
            response = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("unhandled error in route for %s %s", request.method, request.path)
            response = Response.error(500, f"internal server error: {type(err).__name__}")
        self._task = None
        self._app_done(request, response)

    def _deferred_done(self, response: Response):
        request = self._deferred_request
        self._deferred = self._deferred_request = None
        try:
            self._app_done(request, response)
        except Exception:  # noqa: BLE001 - a write failure must not reach whoever resolved the answer
            log.exception("failed to answer %s %s", request.method, request.path)

    @staticmethod
    def _sendable(response, request: Request) -> Response:
        """The route's response, or a 500 naming why it cannot be sent (a handler's bad status,
        media type or header), so that every request is still answered, once."""
        if type(response) is not Response:
            problem = f"is a {type(response).__name__}, not a Response"
        else:
            problem = response_problem(response)
            if problem is None:
                return response
        log.error("cannot send the answer to %s %s: the response %s", request.method, request.path, problem)
        return Response.error(500, f"internal server error: the response {problem}")

    def _app_done(self, request: Request, response: Response):
        self._in_app = False
        self._app_request = None
        transport = self.transport
        if transport is None:
            return
        if type(response) is not Response or response.headers is not None \
                or response.status not in PLAIN_STATUSES or response.content_type not in PLAIN_TYPES:
            response = self._sendable(response, request)  # the usual answer needs no check
        body = response.body
        if (self._between_messages and response.headers is None and request.keep_alive and request.method != "HEAD"
                and request.http_version == "1.1" and type(body) is bytes and len(body) <= 65536
                and not (self._pipeline or self._closing or self._read_paused or self._write_paused
                         or self.server.draining or transport.is_closing())):
            # The usual keep-alive answer: nothing queued, to resume or to close, and no partial
            # next request; what _write and the lines below do, without their branches.
            transport.write(plain_head(response.status, response.content_type, len(body)) + body)
            self.server.answered(request, response.status)
            self._set_phase(IDLE)
            return
        self._write(response, request)
        if not self._in_app:  # else its body streams: what follows waits for its end
            self._answered()

    def _answered(self):
        """The answer is out: go on with what was pipelined, or wait for the next request."""
        if not (self._pipeline or self._closing or self._read_paused or self._write_paused):
            # The usual keep-alive case: nothing queued, nothing to resume or close.
            self._set_phase(self._phase if self._partial_message() else IDLE)
            return
        self._run_pipeline()
        if self._partial_message() and not self._in_app:
            self._set_phase(self._phase)  # the next request's own deadline runs from now

    def _write(self, response: Response, request: Request | None, answering: Request | None = None):
        """``request``: the request answered, None for an error that closes the connection
        (``answering``: the request that error answers, when there is one)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # While draining, requests already received are answered; the last one closes.
        body = response.body
        streamed = isinstance(body, BodyStream)
        if request is not None and request.keep_alive and not (self.server.draining and not self._pipeline) \
                and not (streamed and request.http_version == "1.0"):  # there the close ends the body
            connection = b"keep-alive" if request.http_version == "1.0" else b""
        else:
            self._closing = True
            connection = b"close"
        answered = request or answering
        if answered is not None:
            self.server.answered(answered, response.status)
        else:
            self.server.recorder.unparsed(response.status)
        if streamed:
            self._stream(response, request, connection)
        elif request is not None and request.method == "HEAD":
            transport.write(response.encode_head(head_only_length=len(body), connection=connection))
        elif len(body) > 65536:
            transport.writelines((response.encode_head(connection=connection), body))
        else:
            transport.write(response.encode_head(connection=connection) + body)

    def _stream(self, response: Response, request: Request, connection: bytes):
        """Send the head now and the body as its chunks come; the connection counts as in the app
        until the last one is out, so what was pipelined behind it waits."""
        stream = response.body
        chunked = request.http_version != "1.0"
        self.transport.write(response.encode_head(connection=connection, chunked=chunked))
        if request.method == "HEAD":
            closing = self.loop.create_task(stream.close())
            _closing_streams.add(closing)  # the loop keeps only a weak reference to a task
            closing.add_done_callback(_closing_streams.discard)
            return
        self._in_app = True
        self._app_request = request
        self._set_phase(STREAMING)
        self._task = self.loop.create_task(self._send_stream(stream, request, chunked))

    async def _send_stream(self, stream: BodyStream, request: Request, chunked: bool):
        complete = False
        try:
            while True:
                chunk = await stream.next_chunk()
                transport = self.transport
                if transport is None or transport.is_closing():
                    break
                if not chunk:
                    if chunked:
                        transport.write(b"0\r\n\r\n")
                    complete = True
                    break
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                self._set_phase(STREAMING)
                if self._write_paused:
                    self._writable = self.loop.create_future()
                    await self._writable
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the head is out: only closing early can say it failed
            log.error("the streamed body of %s %s failed after its head was sent: %s: %s", request.method,
                      request.path, type(err).__name__, err)
        finally:
            self._task = None
            try:
                await stream.close()
            finally:
                self._in_app = False
                self._app_request = None
        if self.transport is None:
            return
        if not complete:  # the client must not take a cut body for a whole one
            self._closing = True
            self._pipeline.clear()
            self.transport.close()
            return
        self._answered()

    # -- errors, reading and closing -------------------------------------------------------

    def _fail(self, status: int, message: str):
        """Queue an error answer after what is owed, read nothing more, then close."""
        self._closing = True
        self._linger = True
        self._pipeline.append(Response.error(status, message))
        self._update_reading()
        if not self._in_app:
            self._run_pipeline()

    def _partial_message(self) -> bool:
        return bool(self._url or self._headers or self._body or self._body_size)


    def _update_reading(self):
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._phase == LINGER:
            should_pause = False
        else:
            should_pause = self._write_paused or self._closing or len(self._pipeline) >= self.limits.max_pipelined \
                or self._queued_bytes >= self.limits.max_pipelined_bytes
        if should_pause and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()
        elif not should_pause and self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _maybe_close(self):
        if self.transport is None:
            return
        if self._closing and not self._in_app and not self._pipeline:
            if self._linger and self._phase != LINGER and self.transport.can_write_eof():
                self.transport.write_eof()
                self._set_phase(LINGER)
                self._update_reading()
                return
            if self._phase != LINGER:
                self._cancel_timer()
                self.transport.close()

    def shutdown(self):
        """The server is draining: close now if idle, else after the owed responses."""
        self._closing = True
        if not self._in_app and not self._pipeline:
            self._maybe_close()

    # -- deadlines --------------------------------------------------------------------------
    # Setting a phase only stores a deadline; HttpServer sweeps connections once a second.
    # (A timer per phase cost more than the rest of a small request's handling.)

    def _set_phase(self, phase: str):
        self._phase = phase
        timeout = self.server.phase_timeouts[phase]
        self.deadline = self.loop.time() + timeout if timeout else None

    def _cancel_timer(self):
        self.deadline = None

    def check_deadline(self, now: float):
        """Called by the server's sweep; acts once the current phase's deadline has passed."""
        if self.transport is None:
            return
        if self.send_deadline is not None and now >= self.send_deadline:
            # The peer has not read our answers for send_timeout: nothing more can reach it.
            log.info("closing a connection whose peer left %d bytes unread for %.0fs",
                     self.transport.get_write_buffer_size(), self.limits.send_timeout)
            self.send_deadline = None
            self.transport.abort()
            return
        if self.deadline is None or now < self.deadline:
            return
        phase = self._phase
        self.deadline = None
        if phase == LINGER:
            self.transport.close()
            return
        if phase == WAITING_APP:
            if self._in_app:
                self._app_timed_out()
            return
        if phase == STREAMING:  # the head is out, so no 504: the close tells the client
            log.warning("%s %s: its streamed body gave no chunk within %.0fs; closing", self._app_request.method,
                        self._app_request.path, self.limits.app_timeout)
            self.transport.abort()
            return
        if phase == IDLE or (phase == HEADERS and not self._partial_message() and not self._in_app):
            self.transport.close()  # an idle keep-alive connection: no answer is owed
            return
        what = "headers" if phase == HEADERS else "body"
        self._fail(408, f"timed out waiting for the request {what}")

    def _app_timed_out(self):
        """The app kept a request past app_timeout: answer it 504 (once: the late answer is
        dropped) and close, as what was pipelined behind it can no longer be answered in order."""
        request = self._app_request
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = self._deferred_request = None
        log.warning("%s %s got no answer within %.0fs; answering 504", request.method, request.path,
                    self.limits.app_timeout)
        self._in_app = False
        self._app_request = None
        self._closing = True
        self._pipeline.clear()
        self._queued_bytes = 0
        self._write(Response.error(504, f"no answer within {self.limits.app_timeout:g} seconds"), None, request)
        self._maybe_close()
