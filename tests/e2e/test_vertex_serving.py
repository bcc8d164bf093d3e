"""``hyperserve serve`` as Vertex AI starts it: only AIP_* variables, real sockets, real clients."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pytest

from tests.conftest import CONTROLLED, mlp_reference

pytestmark = pytest.mark.e2e

VERTEX_ENV = {
    "AIP_HEALTH_ROUTE": "/v1/endpoints/123/deployedModels/456",
    "AIP_PREDICT_ROUTE": "/v1/endpoints/123/deployedModels/456:predict",
    "AIP_DEPLOYED_MODEL_ID": "456",
    "AIP_ENDPOINT_ID": "123",
    "AIP_MODE": "PREDICTION",
    "AIP_MODE_VERSION": "1.0.0",
    "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
}
HEALTH = VERTEX_ENV["AIP_HEALTH_ROUTE"]
PREDICT = VERTEX_ENV["AIP_PREDICT_ROUTE"]


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_sklearn_on_vertex_routes(start_server, sklearn_dir, iris):
    import joblib

    x, _ = iris
    server = start_server([], env={**VERTEX_ENV, "AIP_STORAGE_URI": str(sklearn_dir)}, route=HEALTH)
    model = joblib.load(sklearn_dir / "model.joblib")
    r = httpx.post(server.url + PREDICT, json={"instances": x[:10].tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == model.predict(x[:10]).tolist()
    assert body["deployedModelId"] == "456"
    # the default routes are not served when Vertex names its own
    assert httpx.get(server.url + "/health").status_code == 404
    assert httpx.get(server.url + "/live").status_code == 200


def test_sklearn_errors_name_the_offending_instance(start_server, sklearn_dir):
    server = start_server([sklearn_dir])
    cases = [
        (b'{"instances": [[1,2,3,4], [1,2,3]]}', "instances[1]"),
        (b'{"instances": [[1,2,3]]}', "shape [4]"),
        (b'{"instances": [[1,2,3,4]]', "invalid JSON"),
        (b'{"instances": 5}', "'instances' must be a list"),
        (b'{"foo": 1}', "exactly one of 'instances'"),
        (b'{"instances": []}', "must not be empty"),
        (b'[1,2]', "JSON object"),
        (b'{"instances": [[1,2,3,4]], "parameters": 3}', "'parameters' must be an object"),
    ]
    for body, fragment in cases:
        r = httpx.post(server.url + "/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert fragment in r.json()["error"], (body, r.json())
    # still serving after all of that
    r = httpx.post(server.url + "/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert r.status_code == 200 and r.json() == {"predictions": [0]}


def test_sklearn_predict_proba_option(start_server, sklearn_dir, iris):
    import joblib

    x, _ = iris
    server = start_server([sklearn_dir, "--method", "predict_proba"])
    expected = joblib.load(sklearn_dir / "model.joblib").predict_proba(x[:3])
    got = np.array(httpx.post(server.url + "/predict", json={"instances": x[:3].tolist()}).json()["predictions"])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_onnx_rows_multi_output_and_raw_npy(start_server, onnx_model):
    path, weights = onnx_model
    server = start_server([path])
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    expected = mlp_reference(weights, x)

    r = httpx.post(server.url + "/predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 5 and set(predictions[0]) == {"scores", "label"}
    np.testing.assert_allclose([p["scores"] for p in predictions], expected, rtol=1e-4, atol=1e-5)
    assert [p["label"] for p in predictions] == expected.argmax(axis=1).tolist()

    # rawPredict: same route, application/x-npy body
    r = httpx.post(server.url + "/predict", content=npy_bytes(x), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["scores"] for p in r.json()["predictions"]], expected, rtol=1e-4, atol=1e-5)

    # rawPredict: raw little-endian float32 rows
    r = httpx.post(server.url + "/predict", content=x.astype("<f4").tobytes(),
                   headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5

    r = httpx.post(server.url + "/predict", content=b"\x00" * 7, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and "whole number" in r.json()["error"]
    r = httpx.post(server.url + "/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415, r.text
    r = httpx.post(server.url + "/predict", json={"instances": [["a", 1, 2, 3]]})
    assert r.status_code == 400 and "instances[0][0]" in r.json()["error"]


def test_xgboost_with_nan_strings(start_server, xgboost_dir, iris):
    import xgboost

    x, _ = iris
    server = start_server([xgboost_dir])
    rows = x[:4].tolist()
    rows[1][2] = "NaN"
    r = httpx.post(server.url + "/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    booster = xgboost.Booster()
    booster.load_model(str(xgboost_dir / "model.bst"))
    dense = np.array([[np.nan if v == "NaN" else v for v in row] for row in rows], dtype=np.float32)
    expected = booster.predict(xgboost.DMatrix(dense, missing=np.nan))
    np.testing.assert_allclose(r.json()["predictions"], expected, rtol=1e-5)
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2, "x", 4]]})
    assert r.status_code == 400 and "instances[0][2]" in r.json()["error"]
    assert max_batch_size(server) == 4096  # XGBoost's default, as scikit-learn's


def max_batch_size(server) -> int:
    """The most instances one call takes, from the model's Triton configuration."""
    return httpx.get(server.url + "/v2/models/model/config").json()["max_batch_size"]


def test_max_batch_size_is_the_handlers_unless_set(start_server, sklearn_dir, onnx_model):
    # scikit-learn's calls cost mostly a fixed overhead, so they merge up to 4096 instances; an
    # ONNX model's batches are bounded for a GPU's memory; the flag (or its variable) wins.
    assert max_batch_size(start_server([sklearn_dir])) == 4096
    assert max_batch_size(start_server([onnx_model[0]])) == 64
    assert max_batch_size(start_server([sklearn_dir], env={"HYPERSERVE_MAX_BATCH_SIZE": "16"})) == 16


def test_kserve_and_sagemaker_profiles(start_server, sklearn_dir):
    server = start_server([sklearn_dir, "--model-name", "iris"])
    status = httpx.get(server.url + "/v1/models/iris").json()
    assert {k: status[k] for k in ("name", "version", "ready")} == {"name": "iris", "version": "1", "ready": True}
    assert status["model_version_status"][0]["state"] == "AVAILABLE"  # TF Serving's view of the same
    assert httpx.get(server.url + "/v1/models/other").status_code == 404
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert r.json() == {"predictions": [0]}
    assert "deployedModelId" not in r.json()
    assert httpx.get(server.url + "/ping").status_code == 200
    r = httpx.post(server.url + "/invocations", json={"instances": [[6.7, 3.0, 5.2, 2.3]]})
    assert r.json() == {"predictions": [2]}
    r = httpx.get(server.url + "/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert httpx.get(server.url + "/nothing-here").status_code == 404


def test_health_is_503_while_loading_then_200(start_server, controlled_dir, tmp_path):
    release = tmp_path / "release"
    model_dir = controlled_dir(load_until_file=str(release))
    server = start_server([model_dir, "--framework", CONTROLLED], ready=False)
    r = httpx.get(server.url + "/health")
    assert r.status_code == 503 and "loading" in r.json()["error"]
    assert httpx.get(server.url + "/live").status_code == 200
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]]})
    assert r.status_code == 503
    release.write_text("go")
    server.wait_ready()
    assert httpx.post(server.url + "/predict", json={"instances": [[1, 2]]}).json() == {"predictions": [3.0]}


def test_load_failure_exits_nonzero_after_delay(start_server, controlled_dir):
    model_dir = controlled_dir(load_error="weights are corrupt")
    server = start_server([model_dir, "--framework", CONTROLLED, "--load-failure-exit-delay", "3"], ready=False)
    deadline = time.monotonic() + 10
    while "load failed" not in (health := httpx.get(server.url + "/health")).text and time.monotonic() < deadline:
        time.sleep(0.05)
    # Clients get a short reason; the cause (which may name paths) is only in the log.
    assert health.status_code == 503 and health.json() == {
        "error": "not ready: model 'model' is not loaded: its load failed (the server's log says why)"}
    status = httpx.get(server.url + "/v1/models/model")
    assert status.status_code == 503 and "weights are corrupt" not in status.text
    assert server.proc.wait(15) == 1
    assert "weights are corrupt" in server.output()


def test_missing_artifacts_fail_clearly(start_server, tmp_path):
    (tmp_path / "readme.txt").write_text("no model here")
    server = start_server([tmp_path, "--load-failure-exit-delay", "0.2"], ready=False)
    assert server.proc.wait(15) == 1
    assert "no model artifact found" in server.output()


def test_model_error_is_500_and_server_keeps_serving(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED])
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"raise": "boom"}})
    assert r.status_code == 500 and "boom" in r.json()["error"]
    assert httpx.post(server.url + "/predict", json={"instances": [[1, 2]]}).status_code == 200


def test_health_answers_while_model_is_busy(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--model-threads", "1"])
    results = []
    busy = [threading.Thread(target=lambda: results.append(httpx.post(
        server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 1.5}}, timeout=30)))
        for _ in range(3)]
    for t in busy:
        t.start()
    time.sleep(0.3)
    with httpx.Client() as probe:  # made before the clock starts: making one is not the server's time
        started = time.monotonic()
        assert probe.get(server.url + "/health").status_code == 200
        assert time.monotonic() - started < 0.5
    for t in busy:
        t.join()
    assert [r.status_code for r in results] == [200, 200, 200]


def test_request_timeout_is_504(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--request-timeout", "0.3"])
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 1}})
    assert r.status_code == 504, r.text
    assert httpx.post(server.url + "/predict", json={"instances": [[1, 2]]}).status_code == 200


def test_per_request_timeout_parameter_and_header(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED])
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 0.6, "timeout": 0.2}})
    assert r.status_code == 504, r.text
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 0.6}},
                   headers={"x-request-timeout": "0.2"})
    assert r.status_code == 504, r.text
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"timeout": "soon"}})
    assert r.status_code == 400 and "timeout must be a number" in r.json()["error"]
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 0.1, "timeout": 5}})
    assert r.status_code == 200


def test_full_queue_is_503_with_retry_after(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--model-threads", "1", "--max-queue", "1"])
    answers = []
    slow = [threading.Thread(target=lambda: answers.append(httpx.post(
        server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 1}}, timeout=30).status_code))
        for _ in range(2)]  # one runs, one waits: the queue (1) is full
    for t in slow:
        t.start()
        time.sleep(0.2)
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "overloaded" in r.json()["error"]
    for t in slow:
        t.join()
    assert answers == [200, 200]
    assert httpx.post(server.url + "/predict", json={"instances": [[1, 2]]}).status_code == 200


def test_sigterm_drains_in_flight_requests(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--grace-period", "10"])
    result = {}

    def slow_request():
        result["r"] = httpx.post(server.url + "/predict", json={"instances": [[1, 2]], "parameters": {"sleep": 1.5}},
                                 timeout=30)

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.4)
    server.proc.send_signal(15)
    time.sleep(0.3)
    # not ready at once; new connections are refused
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health", timeout=2)
    t.join()
    assert result["r"].status_code == 200 and result["r"].json() == {"predictions": [3.0]}
    assert server.proc.wait(15) == 0


def test_raw_body_reaches_a_handler_that_takes_bytes(start_server, controlled_dir):
    server = start_server([controlled_dir(), "--framework", CONTROLLED])
    r = httpx.post(server.url + "/predict", content=b"\x89PNG" + b"\x00" * 96, headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json() == {"predictions": [100]}


def test_single_file_model_uri(start_server, onnx_model):
    path, _ = onnx_model
    server = start_server([path / "model.onnx"])
    r = httpx.post(server.url + "/predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_sklearn_pipeline_takes_mixed_instances(start_server, tmp_path):
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    x = np.array([["red", 1.0], ["blue", 2.0], ["red", 3.0], ["green", 4.0]] * 5, dtype=object)
    y = [0, 1, 0, 1] * 5
    pipeline = Pipeline([("prep", ColumnTransformer([("colour", OneHotEncoder(), [0])], remainder="passthrough")),
                         ("clf", LogisticRegression())]).fit(x, y)
    joblib.dump(pipeline, tmp_path / "model.joblib")
    server = start_server([tmp_path])
    rows = [["red", 1.5], ["blue", 2.5]]
    r = httpx.post(server.url + "/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pipeline.predict(np.array(rows, dtype=object)).tolist()
    r = httpx.post(server.url + "/predict", json={"instances": [["purple", 1.0]]})  # unknown category
    assert r.status_code == 400 and "the model rejected the instances" in r.json()["error"]
