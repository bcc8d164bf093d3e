"""Signals and processes: SIGTERM under load, kill -9 of a worker and of the supervisor, and a
second server on a port that is already served."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.conftest import CONTROLLED, ServerProcess, free_port
from tests.e2e.test_workers import worker_pids


RACE_S = 0.1  # well short of the app's 0.3 s a request: a request sent earlier is inside it


def test_sigterm_under_load_answers_everything_inside_the_app_and_exits_0(controlled_dir):
    """Requests the app already holds are answered 200; what comes after SIGTERM is refused (503, or
    the connection is closed before it is read); the exit status is 0. A request whose clock was
    read just before the signal may reach the server after it (its thread can wait for the GIL
    between the clock and the write, and the worker handle the signal before reading a keep-alive
    connection's bytes): only those sent RACE_S before it must be answered."""
    server = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--grpc-port", "0",
                            "--grace-period", "10"]).wait_ready()
    sent_before: list[tuple[float, int]] = []  # (when sent, status) for each answered request
    lost_before: list[str] = []
    stop = threading.Event()
    term_at: list[float] = []

    def client():
        while not stop.is_set():
            try:
                with httpx.Client(timeout=15) as c:
                    while not stop.is_set():
                        sent = time.monotonic()
                        r = c.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 0.3}})
                        sent_before.append((sent, r.status_code))
            except httpx.TransportError as err:
                if not term_at or sent < term_at[0] - RACE_S:
                    lost_before.append(f"{type(err).__name__}: {err}")
                return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    term_at.append(time.monotonic())
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(20)
    stop.set()
    for t in threads:
        t.join(20)
    inside = [status for sent, status in sent_before if sent < term_at[0] - RACE_S]
    assert len(inside) >= 16 and set(inside) == {200}, inside
    assert not lost_before, lost_before[:3]
    assert all(status in (200, 503) for sent, status in sent_before), sent_before
    assert code == 0, server.output()[-3000:]


def test_a_second_server_on_a_served_port_is_refused(sklearn_dir):
    """SO_REUSEPORT would let another process of the same user share the port and split the
    traffic; hyperserve refuses to start there (exit 2), with one worker or several, HTTP or gRPC."""
    grpc_port = free_port()
    first = ServerProcess([str(sklearn_dir), "--workers", "2", "--grpc-port", str(grpc_port)],
                          env={"HYPERSERVE_WORKERS": "2"}).wait_ready()
    try:
        for workers, http_port, second_grpc in [(2, first.port, 0), (1, first.port, 0), (2, free_port(), grpc_port),
                                                (1, free_port(), grpc_port)]:
            second = ServerProcess([str(sklearn_dir), "--workers", str(workers), "--grpc-port", str(second_grpc)],
                                   env={"HYPERSERVE_WORKERS": str(workers)}, port=http_port)
            assert second.proc.wait(60) == 2, second.output()[-2000:]
            assert "already served by another process" in second.output()
        pids = worker_pids(first)
        assert len(pids) == 2  # every connection still reaches the first server's workers
        assert httpx.post(first.url + "/predict", json={"instances": [[6.7, 3.0, 5.2, 2.3]]}).json() == {
            "predictions": [2]}
    finally:
        assert first.stop() == 0


def test_kill_9_of_the_supervisor_leaves_no_worker_serving(sklearn_dir):
    server = ServerProcess([str(sklearn_dir), "--workers", "2", "--grpc-port", "0"],
                           env={"HYPERSERVE_WORKERS": "2"}).wait_ready()
    pids = worker_pids(server)
    assert len(pids) == 2
    server.proc.kill()
    server.proc.wait()
    deadline = time.monotonic() + 15
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().split()[2] == "Z":
                        alive.discard(pid)  # exited, not yet reaped by init
            except (ProcessLookupError, FileNotFoundError):
                alive.discard(pid)
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their supervisor"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_kill_9_of_a_worker_under_load_fails_only_its_connections_and_it_is_replaced(start_server, controlled_dir):
    server = start_server([controlled_dir(load_delay=4.0), "--framework", CONTROLLED, "--workers", "2"])
    before = worker_pids(server)
    assert len(before) == 2
    answers: list[tuple[int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(offset: int):
        i = offset
        while not stop.is_set():
            i += 1000
            try:
                with httpx.Client(timeout=10) as c:  # a fresh connection now and then
                    for _ in range(20):
                        i += 1
                        r = c.post(server.url + "/predict", json={"instances": [[i, 0]]})
                        if r.status_code == 200:
                            answers.append((i, r.json()["predictions"][0]))
                        elif r.status_code != 503:
                            failures.append(f"{r.status_code} {r.text}")
            except httpx.TransportError:
                pass  # connections of the killed worker break; that request got no answer at all

    threads = [threading.Thread(target=client, args=(k * 1_000_000,)) for k in range(4)]  # exact in float32
    for t in threads:
        t.start()
    time.sleep(1.0)
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    # the survivor keeps answering, but health waits for the replacement to load
    time.sleep(0.3)
    for _ in range(6):  # whichever worker answers, health is 503 until the replacement is ready
        r = httpx.get(server.url + "/health", headers={"connection": "close"})
        assert r.status_code == 503
        assert "other worker" in r.json()["error"] or "loading" in r.json()["error"]
    server.wait_ready()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert len(answers) > 100
    assert all(float(i) == got for i, got in answers)  # every answer belongs to its own request
    after = worker_pids(server)
    assert len(after) == 2 and victim not in after
