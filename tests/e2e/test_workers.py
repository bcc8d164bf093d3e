"""Worker processes on one port: shared readiness, a killed worker replaced under load."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import CONTROLLED

pytestmark = pytest.mark.e2e


def worker_pids(server, tries: int = 40) -> set[int]:
    pids = set()
    for _ in range(tries):  # new connections spread over the SO_REUSEPORT sockets
        r = httpx.get(server.url + "/v1/models/model/stats", headers={"connection": "close"})
        pids.add(r.json()["worker_pid"])
    return pids


def test_workers_share_the_port_and_stop_on_sigterm(start_server, sklearn_dir):
    server = start_server([sklearn_dir, "--workers", "2"], env={"HYPERSERVE_WORKERS": "2"})
    pids = worker_pids(server)
    assert len(pids) == 2 and server.proc.pid not in pids
    assert httpx.post(server.url + "/predict", json={"instances": [[6.7, 3.0, 5.2, 2.3]]}).json() == {
        "predictions": [2]}
    assert server.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_killed_worker_is_replaced_and_no_answer_is_lost_or_mixed_up(start_server, controlled_dir):
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
