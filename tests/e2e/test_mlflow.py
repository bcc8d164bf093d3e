"""MLflow models served as `mlflow models serve` serves them: MLflow 3 (bench/.venvs/mlflow, run with
--env-manager local) and hyperserve serve the same three models side by side, an sklearn pipeline
with a column signature, a tensor-signature model (both served natively by hyperserve) and a custom
PythonModel (through mlflow.pyfunc), and answer every input format and every bad input alike."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess
from tests.helpers.peer_server import PeerServer

pytestmark = pytest.mark.e2e

VENV = ROOT / "bench" / ".venvs" / "mlflow"
needs_mlflow = pytest.mark.skipif(not (VENV / "bin" / "mlflow").exists(),
                                  reason="needs MLflow in bench/.venvs/mlflow: bash bench/peers/install.sh mlflow")
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="session")
def mlflow_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlflow-models")
    subprocess.run([str(VENV / "bin" / "python"), str(ROOT / "tests" / "helpers" / "mlflow_models.py"), str(out)],
                   check=True, capture_output=True, timeout=300)
    return out


def mlflow_serve(model_dir) -> PeerServer:
    """mlflow models serve on ``model_dir``, 1 worker, in its own venv (--env-manager local)."""
    server = PeerServer([str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
                         "local", "-h", "127.0.0.1", "-p", "{port}", "-w", "1"], VENV, "/ping")
    assert server.wait_ready(), server.output()
    return server


@pytest.fixture(scope="module")
def pair(mlflow_models):
    started = {}

    def get(name):
        if name not in started:
            theirs = mlflow_serve(mlflow_models / name)
            ours = ServerProcess([str(mlflow_models / name), "--trust-model-code"])
            ours.wait_ready("/ping")
            started[name] = theirs, ours
        return started[name]

    yield get
    for theirs, ours in started.values():
        theirs.stop()
        ours.stop()


def post(url, body, content_type="application/json"):
    content = json.dumps(body) if not isinstance(body, (str, bytes)) else body
    return httpx.post(url + "/invocations", content=content, headers={"content-type": content_type}, timeout=30)


def same(a, b) -> bool:
    """Equal JSON, floats to float32's precision (MLflow writes a float32 as the double it widens to)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == pytest.approx(b, rel=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def compare(theirs: httpx.Response, ours: httpx.Response, what: str) -> None:
    assert ours.status_code == theirs.status_code, (what, theirs.text[:500], ours.text[:500])
    assert ours.headers["content-type"].split(";")[0] == theirs.headers["content-type"].split(";")[0], what
    if theirs.status_code == 200:
        assert same(ours.json(), theirs.json()), (what, theirs.text[:300], ours.text[:300])
    elif theirs.headers["content-type"].startswith("application/json"):
        assert ours.json()["error_code"] == theirs.json()["error_code"], (what, theirs.text[:500], ours.text[:500])


CSV = "sepal_length,sepal_width,petal_length,petal_width\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"
BAD = [
    ("{not json", "application/json"),
    ("[1, 2]", "application/json"),
    ('"text"', "application/json"),
    ({"nothing": 1}, "application/json"),
    ({"inputs": ROWS, "instances": ROWS}, "application/json"),
    ({"dataframe_split": {"columns": COLUMNS}}, "text/plain"),
    ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json; charset=latin-1"),
    ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json; format=pandas-split"),
]
CASES = {
    "pipeline": [
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json"),
        ({"dataframe_split": {"columns": COLUMNS, "index": [7, 8, 9], "data": ROWS}}, "application/json"),
        ({"dataframe_records": [dict(zip(COLUMNS, r)) for r in ROWS]}, "application/json"),
        ({"instances": [dict(zip(COLUMNS, r)) for r in ROWS]}, "application/json"),
        ({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}, "application/json"),
        ({"dataframe_split": {"columns": COLUMNS, "data": [[5, 3, 1, 0]]}}, "application/json"),  # ints for doubles
        (CSV, "text/csv"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": [r[:3] for r in ROWS]}}, "application/json"),  # missing
        ({"dataframe_split": {"columns": COLUMNS, "data": [["a", "b", "c", "d"]]}}, "application/json"),  # not numbers
        *BAD,
    ],
    "tensor": [
        ({"inputs": ROWS}, "application/json"),
        ({"instances": ROWS}, "application/json"),
        ({"inputs": ROWS[:1]}, "application/json"),
        ({"inputs": [r[:3] for r in ROWS]}, "application/json"),  # wrong width
        ({"inputs": [["a", "b", "c", "d"]]}, "application/json"),
        *BAD,
    ],
    "torch_export": [
        ({"inputs": ROWS}, "application/json"),
        ({"instances": ROWS[:1]}, "application/json"),
        ({"inputs": [r[:3] for r in ROWS]}, "application/json"),
        *BAD[:4],
    ],
    "torchscript": [
        ({"inputs": ROWS}, "application/json"),
        ({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": ROWS}}, "application/json"),
        *BAD[:4],
    ],
    "custom": [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 3.0], [4.0, 0.5]]}}, "application/json"),
        ({"dataframe_records": [{"a": 1.0, "b": 2.0}], "params": {"factor": 3.0}}, "application/json"),
        ({"inputs": {"a": [1.0, 9.0], "b": [2.0, 1.0]}}, "application/json"),
        ("a,b\n1.0,2.0\n5.0,1.0\n", "text/csv"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}, "application/json"),  # missing b
        ({"dataframe_records": [{"a": 1.0, "b": 2.0}], "params": {"factor": "x"}}, "application/json"),
        *BAD,
    ],
}


@needs_mlflow
@pytest.mark.parametrize("model", sorted(CASES))
def test_the_same_answers_as_mlflow_models_serve(pair, model):
    theirs, ours = pair(model)
    for body, content_type in CASES[model]:
        what = f"{model}: {content_type} {str(body)[:200]}"
        compare(post(theirs.url, body, content_type), post(ours.url, body, content_type), what)
    for path in ("/ping", "/health"):
        a, b = httpx.get(theirs.url + path), httpx.get(ours.url + path)
        assert (a.status_code, a.content) == (b.status_code, b.content) == (200, b"\n")
    assert httpx.get(ours.url + "/version").text == httpx.get(theirs.url + "/version").text


@needs_mlflow
def test_the_other_routes_serve_mlflow_models_too(pair):
    """Vertex and KServe v1 (natively served: through the batching scheduler), OIP v2, and Azure's
    no-code MLflow format on /score (the bare predictions)."""
    theirs, ours = pair("tensor")
    want = post(theirs.url, {"inputs": ROWS}).json()["predictions"]
    assert httpx.post(ours.url + "/predict", json={"instances": ROWS}).json()["predictions"] == want
    assert httpx.post(ours.url + "/v1/models/model:predict", json={"instances": ROWS}).json()["predictions"] == want
    v2 = httpx.post(ours.url + "/v2/models/model/infer", json={"inputs": [
        {"name": "instances", "shape": [3, 4], "datatype": "FP64", "data": sum(ROWS, [])}]}).json()
    assert v2["outputs"][0]["data"] == want
    assert httpx.post(ours.url + "/score", json={"input_data": ROWS}).json() == want
    _, pipeline = pair("pipeline")
    split = {"columns": COLUMNS, "index": [0, 1, 2], "data": ROWS}
    assert httpx.post(pipeline.url + "/score", json={"input_data": split}).json() == want
    assert httpx.post(pipeline.url + "/predict",
                      json={"instances": [dict(zip(COLUMNS, r)) for r in ROWS]}).json()["predictions"] == want
    _, custom = pair("custom")
    azure = {"input_data": {"columns": ["a", "b"], "data": [[1.0, 3.0]]}, "params": {"factor": 2.0}}
    assert httpx.post(custom.url + "/score", json=azure).json() == [{"total": 8.0, "largest": "b"}]
    assert httpx.post(custom.url + "/predict", json={"instances": [{"a": 2.0, "b": 1.0}]}).json() == \
        {"predictions": [{"total": 3.0, "largest": "a"}]}


def test_a_pickled_mlflow_model_needs_trust(tmp_path, start_server):
    """An MLflow sklearn model saved as a pickle runs code when loaded: refused without --trust-model-code."""
    import pickle

    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n")
    refused = ServerProcess([str(tmp_path), "--load-failure-exit-delay", "0.5"])
    assert refused.proc.wait(60) != 0
    assert "--trust-model-code" in refused.output()
    trusted = start_server([tmp_path, "--trust-model-code"], route="/ping")
    reply = httpx.post(trusted.url + "/invocations", json={"inputs": [[0.0], [1.0]]})
    assert reply.json() == {"predictions": [0, 1]}
    trusted_by_env = start_server([tmp_path], env={"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}, route="/ping")
    assert httpx.post(trusted_by_env.url + "/predict", json={"instances": [[1.0]]}).json() == {"predictions": [1]}
    # in a child process, the protocol still reads the model's signature (the handler is a proxy there)
    isolated = start_server([tmp_path, "--trust-model-code", "--isolation", "process"], route="/ping")
    assert httpx.post(isolated.url + "/invocations", json={"inputs": [[1.0]]}).json() == {"predictions": [1]}


TF_MODULE = '''
import sys
import numpy as np, tensorflow as tf, mlflow.tensorflow
from mlflow.models import infer_signature


class Sum(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        return {"total": tf.reduce_sum(x, axis=1)}


x = np.ones((2, 4), np.float32)
mlflow.tensorflow.save_model(Sum(), sys.argv[1], signature=infer_signature(x, np.ones(2, np.float32)))
'''


def test_a_tensorflow_savedmodel_saved_by_mlflow_is_served_natively(tmp_path, start_server):
    pytest.importorskip("tensorflow", reason="needs TensorFlow (the tensorflow-cpu extra)")
    model_dir = tmp_path / "tf"
    subprocess.run([sys.executable, "-c", TF_MODULE, str(model_dir)], check=True, capture_output=True, timeout=300)
    server = start_server([model_dir], route="/ping")
    assert post(server.url, {"inputs": [[1, 2, 3, 4], [1, 1, 1, 1]]}).json() == {"predictions": [10.0, 4.0]}
    assert httpx.get(server.url + "/v1/models/model/metadata").json()["framework"] == "mlflow"
