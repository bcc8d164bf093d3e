"""Several models in one server: names, versions, per-model readiness, config file, warm-up."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from tests.conftest import CONTROLLED

pytestmark = pytest.mark.e2e

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def test_named_models_and_versions(start_server, sklearn_dir, onnx_model, tmp_path):
    onnx_dir, _ = onnx_model
    versioned = tmp_path / "iris"
    for version in ("1", "12", "3"):
        shutil.copytree(sklearn_dir, versioned / version)
    server = start_server([sklearn_dir, "--model-name", "iris", "--model", f"mlp={onnx_dir}",
                           "--model", f"iris:2={sklearn_dir}", "--model", f"layout={versioned}"])
    # the Vertex route uses the first model given; names and versions route on the KServe paths
    assert httpx.post(server.url + "/predict", json=ROW).json() == {"predictions": [0]}
    r = httpx.post(server.url + "/v1/models/mlp:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    assert set(r.json()["predictions"][0]) == {"scores", "label"}
    assert httpx.get(server.url + "/v1/models/iris").json()["version"] == "2"  # the highest version
    assert httpx.get(server.url + "/v1/models/iris/versions/1").json()["version"] == "1"
    r = httpx.post(server.url + "/v1/models/iris/versions/1:predict", json=ROW)
    assert r.json() == {"predictions": [0]}
    r = httpx.get(server.url + "/v1/models/iris/versions/9")
    assert r.status_code == 404 and "no version 9" in r.json()["error"]
    assert httpx.get(server.url + "/v1/models/layout").json()["version"] == "12"  # TF Serving's layout
    meta = httpx.get(server.url + "/v1/models/mlp/metadata").json()
    assert meta["framework"] == "onnx" and meta["signature"]["inputs"][0]["shape"] == [-1, 4]


def test_readiness_is_per_model_and_health_waits_for_all(start_server, sklearn_dir, controlled_dir, tmp_path):
    release = tmp_path / "release-slow-model"
    slow = controlled_dir(load_until_file=str(release))
    config = slow / "models.json"
    config.write_text(json.dumps({"default_model": "iris", "models": [
        {"name": "iris", "uri": str(sklearn_dir)},
        {"name": "slow", "uri": str(slow), "framework": CONTROLLED, "max_batch_size": 4},
    ]}))
    server = start_server(["--model-config", config], ready=False)
    server.wait_ready("/v1/models/iris")
    assert httpx.get(server.url + "/v1/models/slow").status_code == 503
    assert httpx.get(server.url + "/health").status_code == 503
    assert httpx.post(server.url + "/v1/models/iris:predict", json=ROW).status_code == 200
    release.write_text("go")
    server.wait_ready("/health")
    assert httpx.get(server.url + "/v1/models/slow").json()["ready"] is True
    assert httpx.post(server.url + "/predict", json=ROW).json() == {"predictions": [0]}  # default_model


@pytest.mark.parametrize("args, message", [
    (["--model", "broken"], "--model takes NAME[:VERSION]=URI"),
    (["--default-model", "nope", "--model", "a=/tmp"], "default model 'nope'"),
])
def test_bad_model_lists_exit_with_a_message(args, message):
    from tests.conftest import ServerProcess

    proc = ServerProcess(args)
    assert proc.proc.wait(30) == 2
    assert message in proc.output()


def test_config_file_rejects_unknown_keys(tmp_path):
    from tests.conftest import ServerProcess

    config = tmp_path / "models.json"
    config.write_text(json.dumps({"models": [{"name": "a", "uri": "/tmp", "batch": 3}]}))
    proc = ServerProcess(["--model-config", str(config)])
    assert proc.proc.wait(30) == 2
    assert "unknown keys ['batch']" in proc.output()


def test_warm_up_runs_before_ready(start_server, controlled_dir, tmp_path):
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--warmup-requests", "3",
                           "--log-level", "info"])
    assert httpx.get(server.url + "/health").status_code == 200
    server.stop()
    assert "warmed up with 3 calls" in server.output()
    body = tmp_path / "warm.json"
    body.write_text(json.dumps({"instances": [[1, 2], [3, 4]]}))
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--warmup-file", body])
    server.stop()
    assert "warmed up with 1 calls" in server.output()
    body.write_text('{"instances": [[1]]}')
    server = start_server([controlled_dir(), "--framework", CONTROLLED, "--warmup-file", body,
                           "--load-failure-exit-delay", "0.2"], ready=False)
    assert server.proc.wait(30) == 1
    assert "not a valid predict request" in server.output()
