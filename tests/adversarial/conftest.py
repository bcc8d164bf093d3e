"""A real hyperserve serving a real model, probed over loopback as a careless client, an attacker
and a flaky platform would. Every test is bounded in time; each asserts the exact status, that the
server still answers a normal predict correctly afterwards, and, where it matters, memory and
file descriptors before and after."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

from tests.conftest import CONTROLLED, ServerProcess

pytestmark = pytest.mark.adversarial

IRIS_ROW = [6.7, 3.0, 5.2, 2.3]  # the logistic regression answers 2
# Short limits, so that the slow-client cases finish in seconds.
TIMEOUTS = ["--header-timeout", "1", "--body-timeout", "1", "--send-timeout", "2", "--keepalive-timeout", "3"]


class Probe:
    """A served model and the tools to probe it."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.url = server.url
        self.port = server.port
        self.pid = server.proc.pid

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def exchange(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send raw bytes, read until the server closes (or ``timeout``)."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_until_closed(sock, timeout)

    def still_serves(self) -> None:
        r = httpx.post(self.url + "/predict", json={"instances": [IRIS_ROW]}, timeout=10)
        assert r.status_code == 200 and r.json() == {"predictions": [2]}, r.text

    def rss_kb(self, field: str = "VmRSS") -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(field)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def error_answers(self) -> dict[str, int]:
        return httpx.get(self.url + "/stats").json()["error_answers"]


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def serve(args, env=None) -> ServerProcess:
    server = ServerProcess([str(a) for a in args], env)
    return server.wait_ready()


@pytest.fixture(scope="module")
def served(sklearn_dir):
    """One iris model served for a module's tests; at the end, no traceback may be in its log."""
    server = serve([sklearn_dir, *TIMEOUTS, "--grpc-port", "0"])
    yield Probe(server)
    code = server.stop()
    output = server.output()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-5000:]


@pytest.fixture
def controlled(controlled_dir):
    """A model whose calls the request controls (sleep, wide replies), started per test."""
    started = []

    def start(*args, env=None, **settings):
        server = serve([controlled_dir(**settings), "--framework", CONTROLLED, "--grpc-port", "0", *TIMEOUTS,
                        *args], env)
        started.append(server)
        return Probe(server)

    yield start
    for server in started:
        server.stop()
