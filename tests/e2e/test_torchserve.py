"""TorchServe archives made by torch-model-archiver, served over sockets: the Vertex route and
TorchServe's own /predictions route give the same predictions; errors, batching and /ping."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time

import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess
from tests.helpers.torch_models import mlp

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0)")
# On a GPU, handlers that use it compute in TF32 while the reference runs in float32 on the CPU.
RTOL = 1e-3 if torch.cuda.is_available() else 1e-5
pytest.importorskip("ts", reason="needs the torchserve package (pip install 'hyperserve[torchserve]')")

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def reference(rows) -> np.ndarray:
    with torch.inference_mode():
        return mlp()(torch.tensor(rows, dtype=torch.float32)).numpy()


def vertex(server, instances, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/predict", json={"instances": instances}, timeout=30, **kwargs)


def torchserve_route(server, body: bytes, content_type: str, name: str = "model", **headers) -> httpx.Response:
    return httpx.post(f"{server.url}/predictions/{name}", content=body,
                      headers={"content-type": content_type, **headers}, timeout=30)


@pytest.mark.parametrize("role", ["base_handler", "eager", "plain", "plain_tgz", "plain_dir"])
def test_vertex_and_torchserve_routes_agree(start_server, torchserve_archives, role):
    server = start_server([torchserve_archives[role]])
    expected = reference(ROWS)
    answer = vertex(server, [{"data": row} for row in ROWS])
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for row, want, got in zip(ROWS, expected, predictions):
        scores = got["scores"] if isinstance(got, dict) else got
        np.testing.assert_allclose(scores, want, rtol=RTOL)
        single = torchserve_route(server, json.dumps(row).encode(), "application/json")
        assert single.status_code == 200, single.text
        one = single.json()
        np.testing.assert_allclose(one["scores"] if isinstance(one, dict) else one, want, rtol=RTOL)


def test_function_entry_point(start_server, torchserve_archives):
    server = start_server([torchserve_archives["function"]])
    answer = vertex(server, [{"data": row} for row in ROWS])
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == reference(ROWS).argmax(axis=1).tolist()


def test_a_scikit_learn_model_behind_a_torchserve_handler(start_server, torchserve_archives, iris, sklearn_dir):
    import joblib

    server = start_server([torchserve_archives["sklearn"]])
    x = iris[0][:5]
    answer = vertex(server, [{"data": row} for row in x.tolist()])
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == joblib.load(sklearn_dir / "model.joblib").predict(x).tolist()


def test_the_envelope_outputs_and_per_item_response(start_server, torchserve_archives):
    server = start_server([torchserve_archives["plain"]])
    # {"b64"} becomes bytes (the handler reverses them), plain strings stay strings.
    answer = vertex(server, [{"data": {"b64": "aGVsbG8="}}, {"data": "abc"}])
    assert answer.json() == {"predictions": ["olleh", "ABC"]}
    assert vertex(server, [{"data": {"b64": "!!"}}]).json()["error"].startswith("instances[0].data.b64:")
    # TorchServe's route: bytes raw, str as UTF-8, other values JSON; the handler's headers.
    raw = torchserve_route(server, b"\x00\x01\xff", "application/octet-stream")
    assert (raw.status_code, raw.content, raw.headers["content-type"]) == (200, b"\xff\x01\x00",
                                                                           "application/octet-stream")
    text = torchserve_route(server, "héllo".encode(), "text/plain")
    assert text.text == "HÉLLO" and text.headers["content-type"].startswith("text/plain")
    scored = torchserve_route(server, json.dumps(ROWS[0]).encode(), "application/json", **{"x-echo": "ping"})
    assert scored.headers["x-echo"] == "ping" and scored.headers["content-type"] == "application/json"
    # multipart/form-data: each field is a key of the row (curl -F data=@file).
    form = httpx.post(server.url + "/predictions/model", files={"data": ("img.bin", b"abc")}, timeout=30)
    assert form.content == b"cba"


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_request_ids_headers_and_status_reach_the_handler(start_server, torchserve_archives, isolation):
    """Per-request fields cross into the handler's process under --isolation process too."""
    server = start_server([torchserve_archives["plain"], "--isolation", isolation, "--model-threads", "2"])
    answers = {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for i, answer in zip(range(16), pool.map(lambda i: torchserve_route(
                server, json.dumps(ROWS[i % 3]).encode(), "application/json",
                **{"x-request-id": f"req-{i}", "x-echo": f"echo-{i}"}), range(16))):
            answers[i] = answer
    for i, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert (answer.headers["x-seen-request-id"], answer.headers["x-echo"]) == (f"req-{i}", f"echo-{i}")
    fail = torchserve_route(server, b"fail", "text/plain")  # PredictionException's status, across the process
    assert fail.status_code == 418 and fail.json()["message"] == "the input said fail"


def test_handler_errors_and_the_server_keeps_serving(start_server, torchserve_archives):
    server = start_server([torchserve_archives["plain"]])
    fail = torchserve_route(server, b"fail", "text/plain")
    assert fail.status_code == 418 and fail.json()["message"] == "the input said fail"
    assert vertex(server, ["fail"]).status_code == 418
    crash = torchserve_route(server, b"crash", "text/plain")
    assert crash.status_code == 500 and "ZeroDivisionError: division by zero in the handler" in crash.json()["message"]
    short = torchserve_route(server, b"short", "text/plain")
    assert short.status_code == 503 and "number of batch response mismatched" in short.json()["message"]
    assert torchserve_route(server, b"{", "application/json").status_code == 400
    assert torchserve_route(server, b"x", "text/plain", name="nope").status_code == 404
    assert httpx.get(server.url + "/predictions/model").status_code == 405
    assert vertex(server, [{"data": ROWS[0]}]).status_code == 200


def test_concurrent_rows_share_calls_up_to_the_archive_batch_size(start_server, torchserve_archives):
    server = start_server([torchserve_archives["plain"]])  # model-config.yaml: batchSize 8
    body = {"instances": [{"data": row} for row in ROWS[:1]]}
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: httpx.post(server.url + "/predict", json=body, timeout=30), range(200)))
    assert all(a.status_code == 200 for a in answers)
    batches = [a.json()["predictions"][0]["batch"] for a in answers]
    np.testing.assert_allclose([a.json()["predictions"][0]["scores"] for a in answers],
                               np.repeat(reference(ROWS[:1]), 200, axis=0), rtol=RTOL)
    assert max(batches) <= 8
    stats = httpx.get(server.url + "/v1/models/model/stats").json()
    assert sum(int(k) * v for k, v in stats["batch_sizes"].items()) == 200
    assert max(int(k) for k in stats["batch_sizes"]) <= 8


def test_ping_and_health_tell_the_truth_during_a_slow_initialize(start_server, torchserve_archives, tmp_path):
    from tests.helpers.torch_models import SRC, make_archive

    slow = tmp_path / "slow_handler.py"
    slow.write_text((SRC / "plain_handler.py").read_text().replace(
        "    def initialize(self, context):\n",
        "    def initialize(self, context):\n        time.sleep(3)\n"))
    archive = make_archive(tmp_path, "slow", handler=str(slow), serialized=torchserve_archives["plain_dir"] / "mlp.pt",
                           extra_files=[SRC / "errors.py"])
    server = start_server([archive], ready=False)
    early = vertex(server, [{"data": ROWS[0]}])  # initialize() sleeps 3 s: not ready yet
    assert early.status_code == 503 and "not ready" in early.json()["error"]
    started = time.monotonic()
    seen = set()
    while time.monotonic() - started < 60:
        answer = httpx.get(server.url + "/ping", timeout=5)
        seen.add(answer.status_code)
        if answer.status_code == 200:
            break
        assert answer.json()["status"] == "Unhealthy"
        time.sleep(0.1)
    assert seen == {503, 200}
    assert httpx.get(server.url + "/health").status_code == 200
    assert vertex(server, [{"data": ROWS[0]}]).status_code == 200


def test_a_malicious_archive_is_refused(start_server, tmp_path):
    import zipfile

    evil = tmp_path / "evil.mar"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"handler": "h.py", "serializedFile": "m.pt"}}))
        zf.writestr("h.py", "class H:\n    def handle(self, data, context):\n        return data\n")
        zf.writestr("../../escaped.py", "print('pwned')")
    server = ServerProcess([str(evil)], env={"HYPERSERVE_LOAD_FAILURE_EXIT_DELAY": "0"})
    try:
        assert server.proc.wait(60) == 1
    finally:
        server.stop()
    assert "refusing evil.mar: entry '../../escaped.py' would be written outside the model directory" in server.output()
    assert not (tmp_path.parent / "escaped.py").exists()


def test_requirements_are_reported_or_installed_on_request(torchserve_archives):
    plain = str(torchserve_archives["plain"])  # its requirements.txt lists numpy, already installed
    for flags, expected_line in (([], "they are not installed (pass --install-requirements"),
                                 (["--install-requirements"], "installed the archive's requirements from requirements.txt")):
        server = ServerProcess([plain, *flags]).wait_ready()
        server.stop()
        assert expected_line in server.output()


def test_inspect_describes_an_archive(torchserve_archives):
    import sys

    out = subprocess.run([sys.executable, "-m", "hyperserve.server", "inspect", str(torchserve_archives["plain"])],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["framework"] == "torchserve" and info["handler"] == "plain_handler.PlainHandler"
    assert info["batch_size"] == 8 and info["requirements_file"] == "requirements.txt"
