"""Every request gets exactly one answer, its own, in order, under concurrent pipelined load that
mixes good requests, bad bodies, model errors and deadlines: on the model-thread path and on the
event-loop path (handlers that hold the GIL)."""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest

from tests.conftest import CONTROLLED

pytestmark = pytest.mark.e2e

INLINE = "tests.helpers.test_handler:InlineControlledHandler"


def request_bytes(kind: str, i: int) -> bytes:
    if kind == "good":
        body = json.dumps({"instances": [[i, 0.5], [1, 1]]}).encode()
    elif kind == "bad":
        body = b'{"instances": [[%d, "x"]]}' % i
    elif kind == "error":
        body = json.dumps({"instances": [[i, 0]], "parameters": {"raise": f"boom {i}"}}).encode()
    else:  # "late": a deadline shorter than the call
        body = json.dumps({"instances": [[i, 0]], "parameters": {"sleep": 0.05, "timeout": 0.01}}).encode()
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection with answers owed"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        rest += chunk
    buf[:] = rest[length:]
    return int(head.split()[1]), json.loads(rest[:length])


@pytest.mark.parametrize("framework", [CONTROLLED, INLINE])
def test_each_request_gets_its_own_answer_once(start_server, controlled_dir, framework):
    kinds = ["good", "good", "bad", "good", "error", "good"] + (["late"] if framework == CONTROLLED else [])
    server = start_server([controlled_dir(), "--framework", framework, "--workers", "1", "--max-queue", "1024"])
    port = int(server.url.rsplit(":", 1)[1])
    problems: list[str] = []

    def client(k: int):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        buf = bytearray()
        i = k * 10_000
        for _ in range(30):  # 30 rounds of up to 7 pipelined requests
            sent = []
            for kind in kinds:
                i += 1
                sent.append((kind, i))
            sock.sendall(b"".join(request_bytes(kind, n) for kind, n in sent))
            for kind, n in sent:
                status, body = read_response(sock, buf)
                expected = {"good": 200, "bad": 400, "error": 500, "late": 504}[kind]
                if status != expected:
                    problems.append(f"{kind} {n}: {status} {body}")
                elif kind == "good" and body != {"predictions": [n + 0.5, 2.0]}:
                    problems.append(f"{kind} {n}: someone else's answer {body}")
                elif kind == "error" and f"boom {n}" not in body["error"]:
                    problems.append(f"{kind} {n}: someone else's error {body}")
        sock.settimeout(0.2)
        try:
            extra = sock.recv(1)
        except socket.timeout:
            extra = b""
        if buf or extra:
            problems.append(f"client {k}: bytes after the last answer: {bytes(buf) + extra!r}")
        sock.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not problems, problems[:5]
    sizes = httpx.get(server.url + "/v1/models/model/stats").json()["batch_sizes"]
    assert max(int(size) for size in sizes) > 2  # good requests (2 rows each) shared calls
