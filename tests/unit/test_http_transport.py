"""The HTTP/1.1 transport over real sockets: framing, keep-alive, limits, timeouts, real clients."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

import httpx
import pytest

from hyperserve.server.http import BodyStream, Deferred, Limits, Request, Response
from tests.helpers.http_stub import ServerThread

CANCELLED: list[str | None] = []  # X-N of deferred answers cancelled because the client left
STREAMS_CLOSED: list[str] = []  # how each CountingStream ended: "end", "failed" or "left"


class CountingStream(BodyStream):
    """``n`` chunks ``c0;`` ``c1;`` ... a few milliseconds apart; raises after ``fail_after`` of them."""

    def __init__(self, n: int, fail_after: int | None = None):
        self.n, self.sent, self.fail_after = n, 0, fail_after

    async def next_chunk(self) -> bytes:
        if self.sent == self.fail_after:
            raise RuntimeError("the stream broke")
        if self.sent == self.n:
            return b""
        await asyncio.sleep(0.005)
        self.sent += 1
        return f"c{self.sent - 1};".encode()

    async def close(self) -> None:
        STREAMS_CLOSED.append("end" if self.sent == self.n else "failed" if self.sent == self.fail_after else "left")


def echo_app(request: Request):
    if request.query.startswith("defer="):  # answered later through a Deferred, as predicts are
        reply = Deferred()
        reply.on_cancel = lambda: CANCELLED.append(request.headers.get("x-n"))
        answer = Response.json({"deferred": True, "n": request.headers.get("x-n"), "version": request.http_version},
                               status=int(request.headers.get("x-status", 200)),
                               headers={"retry-after": "1"} if "x-status" in request.headers else None)
        asyncio.get_running_loop().call_later(float(request.query[len("defer="):]), reply.resolve, answer)
        return reply
    if request.path == "/slow":
        async def slow():
            await asyncio.sleep(float(request.query.split("=")[1]) if request.query else 0.3)
            return Response.json({"slow": True, "n": request.headers.get("x-n")})
        return slow()
    if request.path == "/stream":
        params = dict(p.split("=") for p in request.query.split("&") if p)
        fail = int(params["fail"]) if "fail" in params else None
        return Response(200, CountingStream(int(params.get("n", 3)), fail), "text/plain", {"x-streamed": "yes"})
    if request.path == "/big":
        return Response(200, b"x" * (8 * 1024 * 1024), "application/octet-stream")
    if request.path == "/crash":
        raise RuntimeError("route bug")
    if request.path.startswith("/bad/"):  # what a handler could hand back: sent directly or later
        bad = BAD_RESPONSES[request.path.split("/")[2]]()
        if request.query == "later":
            reply = Deferred()
            asyncio.get_running_loop().call_soon(reply.resolve, bad)
            return reply
        return bad
    return Response.json({
        "method": request.method, "path": request.path, "query": request.query,
        "length": len(request.body), "n": request.headers.get("x-n"),
        "version": request.http_version,
    })


BAD_RESPONSES = {
    "status-0": lambda: Response(0, b"x"),
    "status-text": lambda: Response("abc", b"x"),
    "204-with-body": lambda: Response(204, b"x"),
    "header-not-latin-1": lambda: Response(200, b"x", headers={"x-name": "snow \u2603"}),
    "header-line-break": lambda: Response(200, b"x", headers={"x-a": "1\r\nx-b: 2"}),
    "header-name": lambda: Response(200, b"x", headers={"bad name": "1"}),
    "media-type": lambda: Response(200, b"x", "text/\u2603"),
}


@pytest.fixture
def http_server(request):
    limits = getattr(request, "param", None) or Limits(max_body_bytes=1024 * 1024, max_header_bytes=4096,
                                                       header_timeout=1.0, body_timeout=1.0, keepalive_timeout=1.0)
    server = ServerThread(echo_app, limits)
    yield server
    server.stop()


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket, buf: bytes = b"", timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """A response's status and headers off a socket (after ``buf``), and what followed them."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before a head; buffer {buf[:200]!r}")
        buf += more
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}, rest


def read_responses(sock: socket.socket, count: int, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """Parse ``count`` responses (content-length framed) off a socket."""
    buf = b""
    out = []
    while len(out) < count:
        try:
            status, headers, buf = read_head(sock, buf, timeout)
        except ConnectionError as err:
            raise ConnectionError(f"closed after {len(out)} responses: {err}") from None
        length = int(headers.get("content-length", 0))
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def is_closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# -- framing and keep-alive -----------------------------------------------------------------

def test_keep_alive_serves_many_requests_on_one_connection(http_server):
    sock = http_server.connect()
    for i in range(5):
        sock.sendall(f"GET /a?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        (status, headers, body), = read_responses(sock, 1)
        assert status == 200 and json.loads(body)["query"] == f"i={i}"
        assert "connection" not in headers
    sock.close()


def test_http_1_0_closes_unless_keep_alive_is_asked(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /a HTTP/1.0\r\n\r\n")
    (status, headers, body), = read_responses(sock, 1)
    assert status == 200 and headers["connection"] == "close" and json.loads(body)["version"] == "1.0"
    assert is_closed(sock)

    sock = http_server.connect()
    sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (status, headers, _), = read_responses(sock, 1)
    assert headers["connection"] == "keep-alive"
    sock.sendall(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (status, _, body), = read_responses(sock, 1)
    assert json.loads(body)["path"] == "/b"


def test_pipelined_requests_are_answered_in_order(http_server):
    sock = http_server.connect()
    # a slow request first: the fast ones behind it must still come back after it
    reqs = [b"GET /slow?d=0.3 HTTP/1.1\r\nHost: x\r\nX-N: 0\r\n\r\n"]
    reqs += [f"POST /echo HTTP/1.1\r\nHost: x\r\nX-N: {i}\r\nContent-Length: {i}\r\n\r\n{'a' * i}".encode()
             for i in range(1, 20)]
    sock.sendall(b"".join(reqs))
    responses = read_responses(sock, 20)
    assert [json.loads(b)["n"] for _, _, b in responses] == [str(i) for i in range(20)]
    assert [json.loads(b).get("length") for _, _, b in responses[1:]] == list(range(1, 20))


def test_deferred_answers_keep_alive_order_head_and_close(http_server):
    """Routes that answer later through a Deferred (the predict path) get the same framing as
    direct ones: keep-alive, pipelined order behind and ahead of direct answers, HEAD, extra
    headers, HTTP/1.0 and Connection: close."""
    sock = http_server.connect()
    for i in range(3):
        sock.sendall(f"GET /d?defer=0.01 HTTP/1.1\r\nHost: x\r\nX-N: {i}\r\n\r\n".encode())
        (status, headers, body), = read_responses(sock, 1)
        assert status == 200 and json.loads(body) == {"deferred": True, "n": str(i), "version": "1.1"}
        assert "connection" not in headers
    reqs = [b"GET /d?defer=0.2 HTTP/1.1\r\nHost: x\r\nX-N: 0\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-N: 1\r\n\r\n",
            b"GET /d?defer=0 HTTP/1.1\r\nHost: x\r\nX-N: 2\r\nX-Status: 503\r\n\r\n",
            b"HEAD /d?defer=0.01 HTTP/1.1\r\nHost: x\r\nX-N: 3\r\n\r\n",
            b"GET /d?defer=0.01 HTTP/1.1\r\nHost: x\r\nX-N: 4\r\n\r\n"]
    sock.sendall(b"".join(reqs))
    first, direct, unavailable = read_responses(sock, 3)
    assert json.loads(first[2])["n"] == "0" and json.loads(direct[2])["n"] == "1"
    assert unavailable[0] == 503 and unavailable[1]["retry-after"] == "1"
    sock.settimeout(5)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head  # no body follows
    (status, _, body), = read_responses(sock, 1)
    assert json.loads(body)["n"] == "4"
    sock.sendall(b"GET /d?defer=0.01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (status, headers, _), = read_responses(sock, 1)
    assert headers["connection"] == "close" and is_closed(sock)

    sock = http_server.connect()
    sock.sendall(b"GET /d?defer=0.01 HTTP/1.0\r\n\r\n")
    (status, headers, body), = read_responses(sock, 1)
    assert json.loads(body)["version"] == "1.0" and headers["connection"] == "close" and is_closed(sock)


def test_a_client_that_leaves_cancels_its_deferred_answer(http_server):
    CANCELLED.clear()
    sock = http_server.connect()
    sock.sendall(b"GET /d?defer=0.5 HTTP/1.1\r\nHost: x\r\nX-N: gone\r\n\r\n")
    time.sleep(0.1)
    # A reset, not a FIN: after a half-close the transport still answers (the peer may be reading).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    deadline = time.monotonic() + 3
    while not CANCELLED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert CANCELLED == ["gone"]
    time.sleep(0.5)  # the answer comes due with nobody to write it to; the server keeps serving
    assert httpx.get(http_server.url + "/d?defer=0").json()["deferred"] is True


def test_connection_close_is_honoured(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_all(sock)
    assert data.count(b"HTTP/1.1 200") == 1 and b"connection: close" in data


def test_head_has_headers_but_no_body(http_server):
    sock = http_server.connect()
    sock.sendall(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
        data += sock.recv(65536)
    head_response, get_response = data.split(b"HTTP/1.1 200 OK")[1:]
    head_length = int(head_response.split(b"content-length: ")[1].split(b"\r\n")[0])
    assert head_response.endswith(b"\r\n\r\n")  # nothing after the headers
    # the echo names the method, so HEAD's would-be body is one byte longer than GET's
    assert head_length == len(get_response.split(b"\r\n\r\n", 1)[1]) + 1


def test_chunked_request_body(http_server):
    sock = http_server.connect()
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    (status, _, body), = read_responses(sock, 1)
    assert status == 200 and json.loads(body)["length"] == 11


def test_expect_100_continue(http_server):
    sock = http_server.connect()
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"data")
    (status, _, body), = read_responses(sock, 1)
    assert status == 200 and json.loads(body)["length"] == 4


def test_expect_100_continue_with_too_large_body_gets_413_without_continue(http_server):
    sock = http_server.connect()
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 413") and b"100 Continue" not in data


# -- limits and malformed input ---------------------------------------------------------------

def test_body_over_limit_is_413_and_closes(http_server):
    sock = http_server.connect()
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 413") and b"exceeds the limit" in data


def test_chunked_body_over_limit_is_413(http_server):
    sock = http_server.connect()
    chunk = b"x" * 65536
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(20):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 413")


def test_headers_over_limit_are_431(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert recv_all(sock).startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
])
def test_malformed_requests_get_400_and_close(http_server, raw):
    sock = http_server.connect()
    sock.sendall(raw)
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert b'"error"' in data


def test_error_after_good_pipelined_request_keeps_order(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /slow?d=0.2 HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
    data = recv_all(sock)
    assert data.index(b"HTTP/1.1 200") < data.index(b"HTTP/1.1 400")


def test_route_exception_is_500_and_connection_survives(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    (s1, _, b1), (s2, _, _) = read_responses(sock, 2)
    assert s1 == 500 and b"RuntimeError" in b1 and s2 == 200


# -- timeouts --------------------------------------------------------------------------------

def test_idle_keep_alive_connection_is_closed(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    read_responses(sock, 1)
    started = time.monotonic()
    assert is_closed(sock, timeout=5)
    assert 0.5 < time.monotonic() - started < 4


def test_slowloris_headers_are_cut_off_with_408(http_server):
    sock = http_server.connect()
    started = time.monotonic()
    sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n")
    for _ in range(8):  # dribble a header byte every 0.25 s: never finishing
        try:
            sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.25)
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def test_slow_body_is_cut_off_with_408(http_server):
    sock = http_server.connect()
    sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 408") and b"body" in data


def test_silent_connection_is_closed(http_server):
    sock = http_server.connect()
    assert is_closed(sock, timeout=5)


# -- backpressure ----------------------------------------------------------------------------

def test_reading_pauses_while_the_peer_does_not_read(http_server):
    sock = http_server.connect()
    request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request * 4)  # 32 MiB of answers owed; we read none of it
    time.sleep(0.5)
    conn = next(iter(http_server.server.connections))
    assert conn._write_paused and conn._read_paused
    buffered = conn.transport.get_write_buffer_size()
    assert buffered < 3 * 8 * 1024 * 1024  # not all four answers were produced into memory
    total = 0
    sock.settimeout(5)
    while total < 4 * 8 * 1024 * 1024:
        chunk = sock.recv(1 << 20)
        assert chunk
        total += len(chunk)
    assert total >= 4 * 8 * 1024 * 1024


# -- graceful shutdown -------------------------------------------------------------------------

def test_shutdown_finishes_in_flight_and_refuses_new(http_server):
    sock = http_server.connect()
    sock.sendall(b"GET /slow?d=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    fut = asyncio.run_coroutine_threadsafe(http_server.server.shutdown(5.0), http_server.loop)
    time.sleep(0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", http_server.port), timeout=1)
    (status, headers, _), = read_responses(sock, 1)
    assert status == 200 and headers["connection"] == "close"
    assert fut.result(5) is True


# -- real clients ----------------------------------------------------------------------------

def test_httpx_client(http_server):
    with httpx.Client(base_url=http_server.url) as client:
        for i in range(3):
            r = client.post("/x", content=b"a" * 1000, headers={"x-n": str(i)})
            assert r.status_code == 200 and r.json()["length"] == 1000
        r = client.post("/x", content=iter([b"ab", b"cd"]))  # streamed: chunked encoding
        assert r.json()["length"] == 4


def test_urllib_client(http_server):
    with urllib.request.urlopen(urllib.request.Request(http_server.url + "/u?q=1", data=b"xyz")) as r:
        body = json.loads(r.read())
    assert body == {"method": "POST", "path": "/u", "query": "q=1", "length": 3, "n": None, "version": "1.1"}


def test_aiohttp_client(http_server):
    import aiohttp

    async def go():
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*[
                session.post(http_server.url + "/a", data=b"x" * i) for i in range(10)])
            return [(r.status, (await r.json())["length"]) for r in results]

    assert asyncio.run(go()) == [(200, i) for i in range(10)]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command (scripts/test.sh installs it)")
def test_curl_client(http_server):
    out = subprocess.run(["curl", "-s", "-D", "-", "-X", "POST", "--data-binary", "hello",
                          "-H", "Expect: 100-continue", http_server.url + "/c"], capture_output=True, timeout=10)
    text = out.stdout.decode()
    assert "HTTP/1.1 200" in text and '"length":5' in text
    out = subprocess.run(["curl", "-s", "-I", http_server.url + "/c"], capture_output=True, timeout=10)
    assert out.stdout.startswith(b"HTTP/1.1 200") and b"content-length" in out.stdout


PIPELINE_LUA = """
init = function(args)
  local r = {}
  for i = 1, 8 do r[i] = wrk.format("POST", "/p", {["Content-Type"] = "application/json"}, '{"a": 1}') end
  req = table.concat(r)
end
request = function() return req end
"""


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs the wrk command (scripts/test.sh installs it)")
def test_wrk_with_pipelining(http_server, tmp_path):
    script = tmp_path / "pipeline.lua"
    script.write_text(PIPELINE_LUA)
    out = subprocess.run(["wrk", "-t1", "-c8", "-d1s", "-s", str(script), http_server.url + "/p"],
                         capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    assert "Non-2xx" not in out.stdout and "Socket errors" not in out.stdout, out.stdout
    requests = int(out.stdout.split(" requests in ")[0].split()[-1])
    assert requests > 1000


def test_repeated_headers_are_joined_in_order(http_server):
    """Many headers of one name: one value, joined by ', ' in the order sent (joined once at the end
    of the head, not copied again for each repeat)."""
    sock = http_server.connect()
    repeats = "".join(f"x-n: {i % 10}\r\n" for i in range(250))
    sock.sendall(f"GET /a HTTP/1.1\r\nHost: x\r\n{repeats}\r\n".encode())
    (status, _, body), = read_responses(sock, 1)
    assert status == 200 and json.loads(body)["n"] == ", ".join(str(i % 10) for i in range(250))
    sock.close()


@pytest.mark.parametrize("when", ["now", "later"])
@pytest.mark.parametrize("kind, says", [
    ("status-0", "status 0 is not a final HTTP status"), ("status-text", "status 'abc' is not a final HTTP status"),
    ("204-with-body", "status 204 cannot carry a body"), ("header-not-latin-1", "has characters outside latin-1"),
    ("header-line-break", "has a line break or NUL"), ("header-name", "is not an HTTP token"),
    ("media-type", "content type 'text/\u2603' has characters outside latin-1")])
def test_a_response_that_cannot_be_sent_is_a_500_naming_why(http_server, kind, says, when):
    sock = http_server.connect()
    query = "?later" if when == "later" else ""
    sock.sendall(f"GET /bad/{kind}{query} HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    (status, _, body), (after, _, _) = read_responses(sock, 2)
    assert status == 500 and says in json.loads(body)["error"]
    assert after == 200, "the connection keeps serving"
    sock.close()


# -- streamed bodies ---------------------------------------------------------------------------

def read_chunked(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes]:
    """A chunked body off ``sock`` (after its head): (the body, what followed it)."""
    body = b""
    while True:
        while b"\r\n" not in buf:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed before the last chunk")
            buf += more
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(buf) < size + 2:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed mid-chunk")
            buf += more
        assert buf[size:size + 2] == b"\r\n"
        if size == 0:
            return body, buf[2:]
        body, buf = body + buf[:size], buf[size + 2:]


def test_a_streamed_body_is_chunked_and_what_was_pipelined_behind_it_waits(http_server):
    STREAMS_CLOSED.clear()
    sock = http_server.connect()
    sock.sendall(b"GET /stream?n=4 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nX-N: 1\r\n\r\n")
    status, headers, rest = read_head(sock)
    assert status == 200 and headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert headers["x-streamed"] == "yes" and headers["content-type"] == "text/plain"
    body, rest = read_chunked(sock, rest)
    assert body == b"c0;c1;c2;c3;"
    status, headers, rest = read_head(sock, rest)
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    assert json.loads(rest)["path"] == "/after"
    assert STREAMS_CLOSED == ["end"]
    # httpx reads the same body
    assert httpx.get(http_server.url + "/stream?n=2", timeout=5).content == b"c0;c1;"


def test_a_streamed_body_to_http_1_0_ends_with_the_close_and_head_sends_none(http_server):
    STREAMS_CLOSED.clear()
    sock = http_server.connect()
    sock.sendall(b"GET /stream?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, rest = read_head(sock)
    assert headers["connection"] == "close" and "transfer-encoding" not in headers and "content-length" not in headers
    assert rest + recv_all(sock) == b"c0;c1;c2;"
    sock = http_server.connect()
    sock.sendall(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, rest = read_head(sock)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    status, headers, rest = read_head(sock, rest)  # no body came between
    assert status == 200 and "content-length" in headers
    for _ in range(100):
        if len(STREAMS_CLOSED) == 2:
            break
        time.sleep(0.01)
    assert STREAMS_CLOSED == ["end", "left"]


def test_a_stream_that_fails_or_is_left_is_closed_and_cut(http_server):
    STREAMS_CLOSED.clear()
    sock = http_server.connect()
    sock.sendall(b"GET /stream?n=5&fail=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, rest = read_head(sock)
    with pytest.raises(ConnectionError):  # no last chunk: the client cannot take the part for the whole
        read_chunked(sock, rest)
    sock = http_server.connect()
    sock.sendall(b"GET /stream?n=100000 HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(sock)
    sock.close()
    for _ in range(300):
        if len(STREAMS_CLOSED) == 2:
            break
        time.sleep(0.01)
    assert STREAMS_CLOSED == ["failed", "left"]
    assert httpx.get(http_server.url + "/a", timeout=5).status_code == 200
