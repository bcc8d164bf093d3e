"""--isolation process: the handler runs in child processes; a crash fails only its call."""

from __future__ import annotations

import concurrent.futures
import pickle

import httpx
import pytest

from hyperserve.server.errors import NotReady, ServingError
from tests.conftest import CONTROLLED, ServerProcess

pytestmark = pytest.mark.e2e


def ask(server, **parameters) -> httpx.Response:
    return httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": parameters}, timeout=30)


def test_calls_run_in_child_processes_and_survive_a_crash(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--isolation", "process",
                           "--model-threads", "2", "--max-batch-size", "1"])
    assert ask(server).json() == {"predictions": [3.0]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pids = {p.json()["predictions"][0] for p in pool.map(lambda _: ask(server, pid=1, sleep=0.5), range(2))}
    assert len(pids) == 2 and server.proc.pid not in pids  # two children, neither the server
    crashed = ask(server, exit=3)
    assert crashed.status_code == 500 and "process died" in crashed.json()["error"]
    assert ask(server).json() == {"predictions": [3.0]}  # a new process took its place
    failed = ask(server, **{"raise": "bad value"})
    assert failed.status_code == 500 and "ValueError: bad value" in failed.json()["error"]
    stats = httpx.get(server.url + "/v1/models/model/metadata").json()
    assert stats["signature"]["inputs"][0]["name"] == "x"


def test_isolation_flag_is_checked(controlled_dir):
    server = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--isolation", "sideways"])
    assert server.proc.wait(30) == 2
    assert "--isolation takes thread or process, got 'sideways'" in server.output()


def test_serving_errors_keep_their_status_across_processes():
    for error in (ServingError("busy", status=503, headers={"retry-after": "1"}), NotReady("loading")):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.status, copy.headers) == (type(error), error.message, error.status,
                                                                         error.headers)


def test_children_exit_when_the_server_is_killed(controlled_dir):
    import os
    import signal
    import time

    server = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--isolation", "process"]).wait_ready()
    child = ask(server, pid=1).json()["predictions"][0]
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the model's child process outlived the killed server")
    server.stop()
