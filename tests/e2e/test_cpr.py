"""Custom Prediction Routines run unmodified, checked against Google's own CPR server side by side."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.e2e

PLAIN = {"PREDICTOR_MODULE": "tests.helpers.cpr_predictors", "PREDICTOR_CLASS": "PlainPredictor"}
SKLEARN = {"PREDICTOR_MODULE": "google.cloud.aiplatform.prediction.sklearn.predictor",
           "PREDICTOR_CLASS": "SklearnPredictor"}
DEFAULT_HANDLER = {"HANDLER_MODULE": "google.cloud.aiplatform.prediction.handler", "HANDLER_CLASS": "PredictionHandler"}
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def vertex_env(model_dir, extra) -> dict[str, str]:
    return {"AIP_STORAGE_URI": str(model_dir), "AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/predict",
            **extra}


class GoogleCprServer:
    """Google's CPR model server (uvicorn + CprModelServer), as its container runs it."""

    def __init__(self, env: dict[str, str], cwd):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "google.cloud.aiplatform.prediction.model_server:CprModelServer",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "AIP_HTTP_PORT": str(self.port), **env}, cwd=str(cwd),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("Google's CPR server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def send(url, body: bytes, content_type="application/json") -> httpx.Response:
    return httpx.post(url + "/predict", content=body, headers={"content-type": content_type}, timeout=30)


def test_plain_predictor_runs_off_the_loop_one_call_at_a_time(sklearn_dir, tmp_path, iris):
    import joblib

    server = ServerProcess([], env=vertex_env(sklearn_dir, PLAIN), cwd=tmp_path).wait_ready()
    try:
        answer = send(server.url, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
        expected = joblib.load(sklearn_dir / "model.joblib").predict(ROWS).tolist()
        assert answer.json() == {"predictions": expected, "overlapping": False}
        # A slow predict does not block health, and calls never overlap in the predictor.
        slow = b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": {"sleep": 0.3}}'
        # The probe is made before the clock starts: making an httpx client (its TLS context) takes
        # 0.03-0.05 s here, and took most of 0.44 s once on a loaded CI machine; not the server's time.
        with concurrent.futures.ThreadPoolExecutor(4) as pool, httpx.Client(timeout=5) as probe:
            pending = [pool.submit(send, server.url, slow) for _ in range(4)]
            time.sleep(0.1)
            started = time.monotonic()
            assert probe.get(server.url + "/health").status_code == 200
            assert time.monotonic() - started < 0.25
            results = [f.result().json() for f in pending]
        assert all(r["overlapping"] is False for r in results)
        failed = send(server.url, b'{"instances": [[1, 2, 3, 4]], "parameters": {"fail": true}}')
        assert failed.status_code == 500
        assert failed.json()["error"] == ("The following exception has occurred: ValueError. "
                                          "Arguments: ('asked to fail', 42).")
        assert send(server.url, b'{"instances": [[1,').status_code == 400  # bad JSON
        assert send(server.url, b"[[1, 2, 3, 4]]").status_code == 500  # preprocess raises, as under CPR
        assert send(server.url, b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}').status_code == 200  # still serving
    finally:
        server.stop()


def test_predictor_flag_and_custom_handler(sklearn_dir, tmp_path):
    pytest.importorskip("google.cloud.aiplatform.prediction", reason="needs hyperserve[cpr] "
                        "(google-cloud-aiplatform[prediction])")
    flagged = ServerProcess([str(sklearn_dir), "--predictor", "tests.helpers.cpr_predictors:ProbaPredictor"],
                            cwd=tmp_path).wait_ready()
    try:
        answer = send(flagged.url, b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}').json()
        assert len(answer["predictions"][0]) == 3 and abs(sum(answer["predictions"][0]) - 1) < 1e-5
    finally:
        flagged.stop()
    env = vertex_env(sklearn_dir, {"PREDICTOR_MODULE": "tests.helpers.cpr_predictors", "PREDICTOR_CLASS": "ProbaPredictor",
                                   "HANDLER_MODULE": "tests.helpers.cpr_predictors", "HANDLER_CLASS": "CsvHandler"})
    custom = ServerProcess([], env=env, cwd=tmp_path).wait_ready()
    try:
        answer = send(custom.url, b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", "text/csv")
        assert answer.status_code == 200 and answer.headers["x-rows"] == "2"
        assert answer.headers["content-type"].startswith("text/plain") and len(answer.text.splitlines()) == 2
        assert send(custom.url, b"not,numbers", "text/csv").status_code == 500
    finally:
        custom.stop()


def test_same_answers_as_googles_cpr_server(sklearn_dir, tmp_path):
    pytest.importorskip("google.cloud.aiplatform.prediction", reason="needs hyperserve[cpr] "
                        "(google-cloud-aiplatform[prediction])")
    env = vertex_env(sklearn_dir, {**SKLEARN, **DEFAULT_HANDLER})
    (tmp_path / "google").mkdir()
    (tmp_path / "ours").mkdir()
    google = GoogleCprServer(env, tmp_path / "google")  # SklearnPredictor copies the artifacts into its cwd
    ours = ServerProcess([], env=env, cwd=tmp_path / "ours").wait_ready()
    try:
        cases = [
            (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}', "application/json"),
            (b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": {"x": 1}, "extra": [1]}', "application/json"),
            (b'{"instances": [[1, 2, 3]]}', "application/json"),  # wrong width: the estimator raises
            (b'{"instances": []}', "application/json"),
            (b'{"no_instances": 1}', "application/json"),  # KeyError in preprocess
            (b'{"instances": [[5.1, 3.5,', "application/json"),  # truncated JSON
            (b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "text/plain"),  # unsupported content type
        ]
        for body, content_type in cases:
            theirs, mine = send(google.url, body, content_type), send(ours.url, body, content_type)
            assert mine.status_code == theirs.status_code, (body, theirs.text, mine.text)
            if theirs.status_code == 200:
                assert mine.json() == theirs.json()
            else:
                # On purpose: our errors are {"error": ...} like every hyperserve route (FastAPI's
                # are {"detail": ...}); the exception and its arguments are named the same way.
                detail, error = theirs.json()["detail"], mine.json()["error"]
                if detail.startswith("The following exception"):
                    assert error == detail
        assert httpx.get(ours.url + "/health").status_code == httpx.get(google.url + "/health").status_code == 200
    finally:
        google.stop()
        ours.stop()
    # On purpose: a JSON body with a duplicate key is refused (Google's json.loads keeps the last).


def test_cpr_worker_knobs_set_the_worker_count():
    from hyperserve.server.workers import cpr_workers

    assert cpr_workers({}) == 0
    assert cpr_workers({"VERTEX_CPR_WEB_CONCURRENCY": "3"}) == 3
    cores = len(os.sched_getaffinity(0))
    assert cpr_workers({"VERTEX_CPR_WORKERS_PER_CORE": "2"}) == 2 * cores
    assert cpr_workers({"VERTEX_CPR_WORKERS_PER_CORE": "4", "VERTEX_CPR_MAX_WORKERS": "1"}) == 1
