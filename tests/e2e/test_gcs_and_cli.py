"""gs:// artifacts through a local GCS emulator, ``hyperserve inspect``, and the container files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers.gcs import upload
from tests.e2e.test_vertex_serving import HEALTH, PREDICT, VERTEX_ENV

pytestmark = pytest.mark.e2e


def test_serves_a_model_from_gs_with_only_platform_variables(start_server, gcs_emulator, onnx_model, tmp_path):
    path, _ = onnx_model
    upload(gcs_emulator, "models", "onnx/v1", path)
    env = {**VERTEX_ENV, "AIP_STORAGE_URI": "gs://models/onnx/v1", "STORAGE_EMULATOR_HOST": gcs_emulator,
           "HYPERSERVE_CACHE_DIR": str(tmp_path / "cache")}
    server = start_server([], env=env, route=HEALTH)
    r = httpx.post(server.url + PREDICT, json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    assert r.status_code == 200, r.text
    assert r.json()["deployedModelId"] == "456"
    downloaded = list((tmp_path / "cache").rglob("model.onnx"))
    assert len(downloaded) == 1


def test_missing_gs_prefix_fails_the_load(start_server, gcs_emulator, tmp_path):
    env = {"AIP_STORAGE_URI": "gs://models/does-not-exist", "STORAGE_EMULATOR_HOST": gcs_emulator,
           "HYPERSERVE_CACHE_DIR": str(tmp_path)}
    upload(gcs_emulator, "models", "placeholder", Path(__file__).parent)  # the bucket exists
    server = start_server(["--load-failure-exit-delay", "0.2"], env=env, ready=False)
    assert server.proc.wait(30) == 1
    assert "cannot read gs://models/does-not-exist: not found" in server.output()


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperserve.server", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_inspect_prints_framework_and_signature(onnx_model, sklearn_dir, xgboost_dir):
    path, _ = onnx_model
    info = json.loads(run_cli("inspect", path).stdout)
    assert info["framework"] == "onnx"
    assert info["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
    assert [o["name"] for o in info["signature"]["outputs"]] == ["scores", "label"]
    assert info["providers"] == ["CPUExecutionProvider"]
    info = json.loads(run_cli("inspect", sklearn_dir).stdout)
    assert info["framework"] == "sklearn" and info["estimator"] == "LogisticRegression"
    assert info["signature"]["inputs"][0]["shape"] == [-1, 4]
    info = json.loads(run_cli("inspect", xgboost_dir).stdout)
    assert info["framework"] == "xgboost" and info["num_features"] == 4


def test_inspect_explains_what_it_could_not_find(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    out = run_cli("inspect", tmp_path)
    assert out.returncode == 2 and "no model artifact found" in out.stderr


def test_help_lists_every_option():
    from hyperserve.server.config import SERVE_OPTIONS

    out = run_cli("serve", "--help").stdout
    for option in SERVE_OPTIONS:
        assert option.flag in out


def test_readme_configuration_table_is_current():
    from hyperserve.server.config import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text(), "regenerate the README table from config.py"
