"""The native whole-request parser agrees with httptools on everything it accepts.

Two connections get the same bytes, one with the fast path and one with httptools alone; the
requests that reach the app and the bytes written back must be identical, however the bytes are
split into reads. The fast path may decline anything; it may never parse differently.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperserve.server.http import Limits, Request, Response
from hyperserve.server.metrics.recorder import RequestRecorder
from hyperserve.server.http.protocol import _PHASE_TIMEOUT, HttpProtocol
from hyperserve.server.native import native

pytestmark = pytest.mark.skipif(native is None, reason="needs the compiled extension (HYPERSERVE_NO_NATIVE unset)")

LIMITS = Limits(max_body_bytes=256, max_header_bytes=300)


class Transport:
    def __init__(self):
        self.out = bytearray()
        self.closed = False

    def write(self, data):
        self.out += data

    def writelines(self, chunks):
        for chunk in chunks:
            self.out += chunk

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.closed = True

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def run_connection(data: bytes, cuts: list[int], fast: bool, loop) -> tuple[list, bytes]:
    seen: list[tuple] = []

    def app(request: Request):
        seen.append((request.method, request.path, request.query, dict(request.headers), request.body,
                     request.http_version, request.keep_alive))
        return Response.json({"n": len(seen), "len": len(request.body)})

    recorder = RequestRecorder(timed=False)
    server = SimpleNamespace(app=app, limits=LIMITS, loop=loop, connections=set(), draining=False,
                             phase_timeouts={phase: 1.0 for phase in _PHASE_TIMEOUT}, recorder=recorder,
                             answered=recorder.answered, tracing=None)
    protocol = HttpProtocol(server)
    if not fast:
        protocol._fast_parse = None
    transport = Transport()
    protocol.connection_made(transport)
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            protocol.data_received(data[start:cut])
            start = cut
    # The date header may tick between the two runs.
    out = b"\r\n".join(line for line in bytes(transport.out).split(b"\r\n") if not line.startswith(b"date: "))
    return seen, out


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def assert_same(data: bytes, cuts: list[int], loop):
    assert run_connection(data, cuts, True, loop) == run_connection(data, cuts, False, loop)


methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "get", "FOO"])
targets = st.one_of(
    st.sampled_from(["/predict", "/v1/models/m:predict", "/health?x=1&y=2", "/a%20b", "/a#frag", "*", "/",
                     "http://h/predict?q", "/p?", "/é"]),
    st.text(alphabet="/abc?=&%:;@+-._~!$'()*,#", min_size=1, max_size=12).map(lambda t: "/" + t))
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1"])
names = st.sampled_from(["Host", "host", "Content-Type", "X-N", "X-Request-Timeout", "Connection", "Transfer-Encoding",
                         "Expect", "Upgrade", "Content-Length", "x_y", "Bad Name", "é"])
values = st.sampled_from(["a", "keep-alive", "close", "Keep-Alive", "upgrade", "chunked", "100-continue", "",
                          " padded ", "1, 2", "application/json", "5", "x\ty", "\x7f", "\x01"])


clean_names = st.sampled_from(["Host", "Content-Type", "X-N", "x-n", "Accept"])
clean_values = st.sampled_from(["a", "application/json", "1, 2", "x\ty", "*/*"])


@st.composite
def messages(draw) -> bytes:
    """Half of them made only of what the fast path accepts, half of anything."""
    clean = draw(st.booleans())
    body = draw(st.binary(max_size=40))
    pairs = st.tuples(clean_names, clean_values) if clean else st.tuples(names, values)
    headers = draw(st.lists(pairs, max_size=5))
    if clean and draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from(["keep-alive", "close", "Close"]))))
    eol = "\r\n" if clean else draw(st.sampled_from(["\r\n", "\r\n", "\r\n", "\n"]))
    method = draw(st.sampled_from(["GET", "POST", "PUT"]) if clean else methods)
    target = draw(st.sampled_from(["/predict", "/v1/models/m:predict", "/health?x=1"]) if clean else targets)
    lines = [f"{method} {target} {'HTTP/1.1' if clean else draw(versions)}"]
    lines += [f"{name}:{draw(st.sampled_from([' ', '', '  ', chr(9)]))}{value}" for name, value in headers]
    length = draw(st.sampled_from(["right", "none"] if clean else ["right", "right", "none", "short", "long", "twice"]))
    if length in ("right", "twice"):
        lines.append(f"Content-Length: {len(body)}")
    if length == "twice":
        lines.append(f"Content-Length: {len(body)}")
    elif length == "short":
        lines.append(f"Content-Length: {max(0, len(body) - 3)}")
    elif length == "long":
        lines.append(f"Content-Length: {len(body) + 3}")
    if not clean and draw(st.booleans()) and len(lines) > 1:  # an obs-fold continuation line
        lines.insert(2, " folded")
    head = eol.join(lines) + eol + eol
    return head.encode("utf-8") + (body if length != "none" else b"")


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          deadline=None)
@given(st.lists(messages(), min_size=1, max_size=3), st.lists(st.integers(0, 400), max_size=3))
def test_fast_path_and_httptools_agree(loop, stream, cuts):
    data = b"".join(stream)
    assert_same(data, [c for c in cuts if c < len(data)], loop)


def test_a_usual_predict_request_takes_the_fast_path():
    body = b'{"instances": [[1, 2]]}'
    data = (b"POST /predict?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            b"X-A: 1\r\nx-a: 2\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    method, path, query, headers, parsed_body, end, keep_alive = native.parse_request(data + b"GET /", 0, 8192, 1024)
    assert (method, path, query, parsed_body, end, keep_alive) == ("POST", "/predict", "x=1", body, len(data), True)
    assert headers == {"host": "h", "content-type": "application/json", "x-a": "1, 2", "content-length": str(len(body))}
    assert native.parse_request(data + b"GET /", end, 8192, 1024) is None  # incomplete: httptools waits for it


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
    b"GET /a%2Fb HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h \r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc",
])
def test_what_the_fast_path_declines(data, loop):
    assert native.parse_request(data, 0, 8192, 1024) is None
    assert_same(data, [], loop)


def test_limits_are_left_to_the_general_parser(loop):
    big_head = b"GET / HTTP/1.1\r\nX: " + b"v" * 400 + b"\r\n\r\n"
    big_body = b"POST / HTTP/1.1\r\nContent-Length: 300\r\n\r\n" + b"x" * 300
    for data in (big_head, big_body):
        assert native.parse_request(data, 0, LIMITS.max_header_bytes, LIMITS.max_body_bytes) is None
        seen, out = run_connection(data, [], True, loop)
        assert seen == [] and out.split(b"\r\n")[0] in (b"HTTP/1.1 431 Request Header Fields Too Large",
                                                         b"HTTP/1.1 413 Request Entity Too Large")
