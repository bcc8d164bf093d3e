"""Worker processes on one port: shared readiness, stopped together on SIGTERM (a killed worker
replaced under load: tests/adversarial/test_processes.py)."""

from __future__ import annotations

import os

import httpx
import pytest


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
