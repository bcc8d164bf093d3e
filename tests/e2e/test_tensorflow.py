"""SavedModels over sockets with TF Serving's request/response rules (CONTRACTS.md §2) and routes."""

from __future__ import annotations

import base64
import concurrent.futures

import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e
pytest.importorskip("tensorflow", reason="needs tensorflow (pip install 'hyperserve[tensorflow]')")

W = np.array([[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, -0.5, 1.0], [2.0, 0.0, 0.25]], dtype=np.float32)


@pytest.fixture(scope="module", params=["thread", "process"], ids=["threads", "isolated"])
def server(request, tf_saved_model):
    """Every test below runs twice: in the server's threads and under --isolation process, where
    signatures, :classify/:regress and the signature_def metadata come through the child process."""
    process = ServerProcess([str(tf_saved_model), "--model-name", "cases", "--isolation", request.param],
                            ).wait_ready(timeout=120)
    yield process
    process.stop()


def post(server, body, path="/v1/models/cases:predict") -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def test_row_and_columnar_formats(server):
    x = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]]
    expected = (np.array(x, dtype=np.float32) @ W).tolist()
    assert post(server, {"instances": x}).json() == {"predictions": expected}
    assert post(server, {"inputs": x}).json() == {"outputs": expected}
    assert post(server, {"inputs": {"x": x}}).json() == {"outputs": expected}
    assert post(server, {"instances": [{"x": row} for row in x]}).json() == {"predictions": expected}
    # The Vertex route is the same model.
    assert httpx.post(server.url + "/predict", json={"instances": x}).json() == {"predictions": expected}


def test_signature_name_chooses_the_signature_and_its_dtypes(server):
    doubled = post(server, {"signature_name": "doubled", "instances": [1, 9007199254740993]})
    assert doubled.json() == {"predictions": [2, 18014398509481986]}  # int64 exact
    assert post(server, {"signature_name": "upper", "instances": ["ab", "Cd"]}).json() == {"predictions": ["AB", "CD"]}
    unknown = post(server, {"signature_name": "nope", "instances": [1]})
    assert unknown.status_code == 400 and 'Serving signature name: "nope" not found' in unknown.json()["error"]


def test_multiple_inputs_and_outputs(server):
    row = post(server, {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 3}, {"a": [0.5, 0.5], "b": -1}]})
    assert row.json() == {"predictions": [{"label": 30, "sum": 6.0}, {"label": -10, "sum": 0.0}]}
    columnar = post(server, {"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": [3]}})
    assert columnar.json() == {"outputs": {"label": [30], "sum": [6.0]}}
    missing = post(server, {"signature_name": "multi", "instances": [{"a": [1, 2]}]})
    assert missing.status_code == 400 and missing.json()["error"] == "instances[0]: missing input 'b'"


def test_columnar_follows_tf_serving_rules(server):
    """Columnar inputs are whole tensors: a bare value is rank 0, leading dimensions may differ,
    outputs come back whole and a scalar output is a scalar."""
    x = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]]
    scaled = np.array(x, dtype=np.float32) @ W * np.float32(2.5)
    answer = post(server, {"signature_name": "scaled", "inputs": {"x": x, "factor": 2.5}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outputs": {"scaled": scaled.tolist(), "total": pytest.approx(float(scaled.sum()))}}
    broadcast = post(server, {"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": [3, 4, 5]}})
    assert broadcast.json() == {"outputs": {"label": [30, 40, 50], "sum": [6.0, 7.0, 8.0]}}
    rank = post(server, {"signature_name": "scaled", "inputs": {"x": x, "factor": [2.5]}})
    assert rank.status_code == 400 and "expects a tensor of shape []" in rank.json()["error"]


def test_bytes_in_and_out_as_b64(server):
    data = bytes(range(256))
    answer = post(server, {"signature_name": "image", "instances": [{"b64": base64.b64encode(data).decode()}]})
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    assert prediction["length"] == 256
    assert base64.b64decode(prediction["reversed_bytes"]["b64"]) == data[::-1]


@pytest.mark.parametrize("body, fragment", [
    ({"signature_name": "doubled", "instances": [1.0]}, "instances[0]: expected an integer"),
    ({"signature_name": "doubled", "instances": [True]}, "instances[0]"),
    ({"signature_name": "upper", "instances": [1]}, "instances[0]"),
    ({"instances": [[1, 2, 3, None]]}, "instances[0][3]"),
    ({"instances": [[1, 2, 3]]}, "shape"),
    ({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, "exactly one of 'instances'"),
    ({"signature_name": "doubled", "instances": [{"b64": "AA=="}]}, "instances[0]"),
])
def test_strict_typing_errors_are_400s(server, body, fragment):
    answer = post(server, body)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["error"]


def test_tf_serving_status_and_metadata_routes(server):
    status = httpx.get(server.url + "/v1/models/cases").json()
    assert status["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}]
    assert httpx.get(server.url + "/v1/models/cases/versions/1").status_code == 200
    metadata = httpx.get(server.url + "/v1/models/cases/metadata").json()
    assert metadata["model_spec"] == {"name": "cases", "signature_name": "", "version": "1"}
    x = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT" and [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "4"]
    assert post(server, {"instances": [[1, 2, 3, 4]]}, "/v1/models/cases/versions/1:predict").status_code == 200
    assert post(server, {"instances": [[1, 2, 3, 4]]}, "/v1/models/cases/versions/7:predict").status_code == 404


def test_classify_and_regress_take_tf_examples(server):
    classify = post(server, {"signature_name": "classify", "examples": [{"x": [0.0, 0.0]}, {"x": [1.0, 3]}]},
                    "/v1/models/cases:classify")
    assert classify.status_code == 200, classify.text
    result = classify.json()["result"]
    assert [[label for label, _ in row] for row in result] == [["neg", "pos"], ["neg", "pos"]]
    np.testing.assert_allclose([[score for _, score in row] for row in result],
                               [[0.5, 0.5], [1 / (1 + np.e ** 2), 1 / (1 + np.e ** -2)]], rtol=1e-5)
    regress = post(server, {"signature_name": "regress", "context": {"k": 2, "tag": "ab"},
                            "examples": [{"x": [1.0, 2.0]}, {"x": [0.5, 0.5], "k": 0}]}, "/v1/models/cases:regress")
    assert regress.json() == {"result": [12.0, 2.0]}  # (1+2)*(2+2), (0.5+0.5)*(0+2)
    wrong = post(server, {"examples": [{"x": [1.0, 2.0]}]}, "/v1/models/cases:classify")
    assert wrong.status_code == 400 and wrong.json()["error"] == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict")
    bad = post(server, {"signature_name": "regress", "examples": [{"x": [1.0, None]}]}, "/v1/models/cases:regress")
    assert bad.status_code == 400 and bad.json()["error"].startswith("examples[0].x[1]:")
    assert post(server, {"signature_name": "regress", "examples": []}, "/v1/models/cases:regress").status_code == 400


def test_tensorflow_and_torch_import_together():
    import subprocess
    import sys

    pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0)")
    out = subprocess.run([sys.executable, "-c", "import torch, tensorflow; print('both')"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "both"


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_the_batching_file_sets_batch_size_and_delay(tmp_path, isolation):
    from tests.helpers.tf_models import save_cases

    save_cases(tmp_path / "1", batching="max_batch_size { value: 4 }\nbatch_timeout_micros { value: 2000 }\n"
                                        "num_batch_threads { value: 2 }\n")
    server = ServerProcess([str(tmp_path), "--isolation", isolation]).wait_ready(timeout=120)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: post(server, {"instances": [[i, 0, 0, 0]]}, "/predict"), range(64)))
        for i, answer in enumerate(answers):
            assert answer.json()["predictions"] == [(np.array([i, 0, 0, 0], dtype=np.float32) @ W).tolist()]
        sizes = httpx.get(server.url + "/v1/models/model/stats").json()["batch_sizes"]
        assert max(int(k) for k in sizes) <= 4 and sum(int(k) * v for k, v in sizes.items()) == 64
        config = httpx.get(server.url + "/v2/models/model/config").json()
        assert (config["max_batch_size"], config["dynamic_batching"]["max_queue_delay_microseconds"]) == (4, 2000)
    finally:
        server.stop()


def test_tensorflow_is_imported_only_for_savedmodels(sklearn_dir):
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from hyperserve.server.repository.model import load_handler; "
            "from hyperserve.handlers.base import HandlerConfig; "
            f"load_handler({str(sklearn_dir)!r}, framework='auto', config=HandlerConfig(), cache_dir=Path('/tmp')); "
            "print('tensorflow' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
