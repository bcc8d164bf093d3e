"""The transport against careless and hostile clients: slow ones, oversize ones, malformed and
smuggling requests, pipelining with a bad request in the middle, and a connection flood."""

from __future__ import annotations

import resource
import socket
import time

import httpx
import orjson
import pytest

from .conftest import IRIS_ROW, read_until_closed, status_of

PREDICT = orjson.dumps({"instances": [IRIS_ROW]})


def predict_request(body: bytes = PREDICT, path: str = "/predict", extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


# -- slow clients ------------------------------------------------------------------------------

def test_slowloris_headers_are_cut_off_with_408(served):
    with served.connect() as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(6):  # a header line every 0.4 s: never done within --header-timeout 1
            time.sleep(0.4)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        data = read_until_closed(sock, 5)
    assert status_of(data) == 408 and b"timed out waiting for the request headers" in data
    assert time.monotonic() - started < 4
    served.still_serves()


def test_a_slow_body_is_cut_off_with_408(served):
    with served.connect() as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        data = read_until_closed(sock, 5)
    assert status_of(data) == 408 and b"timed out waiting for the request body" in data
    served.still_serves()


def test_a_client_that_pipelines_and_never_reads_is_disconnected(controlled):
    """Our answers pile up unread: reading pauses at once, and after --send-timeout (2 s) the
    connection is closed, whatever is still owed. The server keeps serving others meanwhile."""
    probe = controlled()
    body = orjson.dumps({"instances": [[1, 2]] * 200, "parameters": {"wide": 500}})  # ~400 KB per answer
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", probe.port))
    sock.setblocking(False)
    sent = 0
    request = predict_request(body)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sent < 200:
        try:
            sock.send(request)
            sent += 1
        except BlockingIOError:
            time.sleep(0.05)
    r = httpx.post(probe.url + "/predict", json={"instances": [[1, 2]]}, timeout=5)
    assert r.json() == {"predictions": [3.0]}  # others are served while this one is stuck
    time.sleep(4)  # past --send-timeout, with the sweep's half second
    sock.setblocking(True)
    got = read_until_closed(sock, 5)
    sock.close()
    owed = sent * 400_000
    assert len(got) < owed / 2, (len(got), owed)  # closed long before it was all delivered
    assert httpx.get(probe.url + "/live").status_code == 200


def test_a_request_the_app_never_answers_gets_504_at_the_backstop(controlled):
    """Past --request-timeout and its margin, the transport answers 504 itself, once."""
    probe = controlled("--request-timeout", "1")
    started = time.monotonic()
    r = httpx.post(probe.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 8}}, timeout=20)
    assert r.status_code == 504
    assert time.monotonic() - started < 8
    r = httpx.post(probe.url + "/predict", json={"instances": [[1, 2]]}, timeout=20)
    assert r.json() == {"predictions": [3.0]}


# -- oversize ----------------------------------------------------------------------------------

def test_oversize_bodies_and_heads(sklearn_dir):
    from .conftest import Probe, serve

    server = serve([sklearn_dir, "--max-body-size", "100000", "--max-header-size", "4096", "--grpc-port", "0"])
    probe = Probe(server)
    try:
        data = probe.exchange(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100001\r\n\r\n")
        assert status_of(data) == 413 and b"exceeds the limit of 100000" in data
        chunk = b"%x\r\n%s\r\n" % (60000, b"1" * 60000)
        data = probe.exchange(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2)
        assert status_of(data) == 413
        data = probe.exchange(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert status_of(data) == 431
        data = probe.exchange(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(data) == 431
        probe.still_serves()
    finally:
        server.stop()


# -- malformed and smuggling -------------------------------------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",  # obsolete line folding at the start
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_and_smuggling_requests_get_400_and_close(served, raw):
    data = served.exchange(raw)
    assert status_of(data) in (400, 413), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1  # nothing smuggled behind it was answered
    served.still_serves()


def test_a_smuggled_request_after_an_ambiguous_one_is_never_answered(served):
    smuggled = predict_request()
    raw = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(smuggled) + 5).encode()
           + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
    data = served.exchange(raw)
    assert status_of(data) == 400 and data.count(b"HTTP/1.1 ") == 1


def test_pipelining_with_a_bad_request_in_the_middle(served):
    """Answers for the requests before it, in order; then the 400; nothing after it."""
    raw = predict_request() + predict_request() + b"NOT HTTP AT ALL\r\n\r\n" + predict_request()
    data = served.exchange(raw)
    statuses = [int(part[:3]) for part in data.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 200, 400], data[:600]
    assert data.count(b'{"predictions":[2]}') == 2
    served.still_serves()


# -- a connection flood ------------------------------------------------------------------------

def test_a_connection_flood_keeps_memory_and_descriptors_bounded(served):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(3000, max(100, min(hard, 8192) - 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 200)), hard))
    served.still_serves()
    rss_before, fds_before = served.rss_kb(), served.fds()
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        time.sleep(0.5)
        served.still_serves()  # served beside thousands of idle connections
        rss_during = served.rss_kb()
        assert rss_during - rss_before < count * 20 + 30_000, (rss_before, rss_during)  # < 20 KB a connection
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 10
    while served.fds() > fds_before + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served.fds() <= fds_before + 5, (fds_before, served.fds())
    served.still_serves()
