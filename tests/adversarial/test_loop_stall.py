"""The event loop never stalls: while 16 connections send the worst bodies of each kind that fit
the limits, GET /live keeps answering in a few milliseconds (p50 under 5 ms)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from .conftest import Probe, serve

SIZE = 230 * 1024  # under the old 256 KB threshold of on-loop decoding, where the stalls were


def worst_bodies() -> dict[str, bytes]:
    keys = ",".join(f'"k{i}":1' for i in range(SIZE // 9))
    return {
        # many keys and a '":' inside a string: the duplicate-key check's exact pass
        "duplicate-key check": f'{{"instances":[[1,2,3,4]],"parameters":{{{keys}}},"x":"\\":"}}'.encode(),
        # one-key objects: the pure-Python path, and a 400
        "objects": ('{"instances":[' + ",".join('{"x":[1.5,2.5,3.5,4.5]}' for _ in range(SIZE // 24)) + "]}").encode(),
        "ragged": ('{"instances":[' + ",".join("[1,2,3]" if i % 2 else "[1,2,3,4]" for i in range(SIZE // 9))
                   + "]}").encode(),
        "strings": ('{"instances":[' + ",".join('["a","b","c","d"]' for _ in range(SIZE // 18)) + "]}").encode(),
        "NaN tokens": ('{"instances":[' + ",".join("[NaN,1,2,3]" for _ in range(SIZE // 12)) + "]}").encode(),
        "deep nesting": b'{"instances":[' + b"[" * 1000 + b"]" * 1000 + b"]," + b'"p":"' + b"x" * (SIZE - 2100) + b'"}',
        "numbers (native path)": ('{"instances":[' + ",".join("[1.5,2.5,3.5,4.5]" for _ in range(SIZE // 18))
                                  + "]}").encode(),
    }


BLASTER = r'''
import socket, sys, threading, time
port, seconds, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
body = open(path, "rb").read()
request = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
stop = time.monotonic() + seconds
def blast():
    with socket.create_connection(("127.0.0.1", port)) as s:
        while time.monotonic() < stop:
            s.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            top, _, rest = head.partition(b"\r\n\r\n")
            length = int(top.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += s.recv(65536)
threads = [threading.Thread(target=blast) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
'''


@pytest.fixture(scope="module")
def stall_served(sklearn_dir):
    server = serve([sklearn_dir, "--grpc-port", "0"])
    yield Probe(server)
    server.stop()


@pytest.mark.parametrize("kind", list(worst_bodies()))
def test_live_answers_quickly_while_16_connections_send_the_worst_bodies(stall_served, kind, tmp_path):
    body_file = tmp_path / "body.json"
    body_file.write_bytes(worst_bodies()[kind])
    seconds = 5.0
    blaster = subprocess.Popen([sys.executable, "-c", BLASTER, str(stall_served.port), str(seconds), str(body_file)])
    try:
        time.sleep(1.0)  # the load is on
        latencies = []
        with socket.create_connection(("127.0.0.1", stall_served.port), timeout=10) as sock:
            while len(latencies) < 100 and blaster.poll() is None:
                started = time.perf_counter()
                sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = sock.recv(4096)
                latencies.append(time.perf_counter() - started)
                assert answer.startswith(b"HTTP/1.1 200"), answer
                time.sleep(0.02)
    finally:
        blaster.wait(30)
    assert blaster.returncode == 0
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    print(f"{kind}: /live p50 {p50 * 1e3:.2f} ms, p90 {latencies[len(latencies) * 9 // 10] * 1e3:.2f} ms")
    assert len(latencies) >= 50 and p50 < 0.005, f"{kind}: /live p50 {p50 * 1e3:.1f} ms over {len(latencies)}"
    stall_served.still_serves()
