"""Fixtures: small real models built on the spot, and a ``hyperserve serve`` subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Servers and jobs the tests start log text, which their assertions read; tests/e2e/test_logs.py
# asks for JSON (the default off a terminal) itself.
os.environ.setdefault("HYPERSERVE_LOG_FORMAT", "text")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``hyperserve serve`` in a subprocess with the platform's environment."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, port: int | None = None,
                 cwd: Path | None = None):
        self.port = port or free_port()
        # One worker unless a test asks for more: the defaults (one per core) vary by machine.
        # A free gRPC port too: hyperserve refuses one another server holds (8081 by default),
        # and a previous test's server may still be draining.
        self.env = {**os.environ, "AIP_HTTP_PORT": str(self.port), "PYTHONPATH": str(ROOT),
                    "HYPERSERVE_WORKERS": "1", "HYPERSERVE_GRPC_PORT": str(free_port()), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hyperserve.server", "serve", "--host", "127.0.0.1", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(cwd or ROOT))
        self.url = f"http://127.0.0.1:{self.port}"
        self._output: str | None = None

    def wait_listening(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"server did not listen within {timeout}s:\n{self.output()}")

    def wait_ready(self, route: str = "/health", timeout: float = 60.0):
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + route, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self._output is None and self.proc.poll() is not None:
            self._output = self.proc.stdout.read().decode(errors="replace")
        return self._output or "(still running)"

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output()
        return self.proc.returncode


@pytest.fixture
def start_server():
    started: list[ServerProcess] = []

    def start(args, env=None, ready=True, route="/health"):
        server = ServerProcess([str(a) for a in args], env)
        started.append(server)
        return server.wait_ready(route) if ready else server.wait_listening()

    yield start
    for server in started:
        server.stop()


# -- models --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


@pytest.fixture(scope="session")
def iris_rows(iris):
    """3,000 iris rows drawn with a fixed seed (batch jobs' inputs)."""
    x, _ = iris
    return x[np.random.default_rng(0).integers(0, len(x), 3000)]


@pytest.fixture(scope="session")
def expected(sklearn_dir, iris_rows):
    """What the sklearn_dir model predicts for iris_rows."""
    import joblib

    return joblib.load(sklearn_dir / "model.joblib").predict(iris_rows).tolist()


@pytest.fixture(scope="session")
def sklearn_dir(tmp_path_factory, iris):
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = iris
    path = tmp_path_factory.mktemp("sklearn")
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), path / "model.joblib")
    return path


@pytest.fixture(scope="session")
def xgboost_dir(tmp_path_factory, iris):
    import xgboost

    x, y = iris
    path = tmp_path_factory.mktemp("xgboost")
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                            xgboost.DMatrix(x, label=y), num_boost_round=5)
    booster.save_model(str(path / "model.bst"))
    return path


def build_onnx_mlp(path: Path, n_in: int = 4, hidden: int = 8, n_out: int = 3, seed: int = 0,
                   two_outputs: bool = False) -> dict[str, np.ndarray]:
    """A Gemm-Relu-Gemm MLP with a dynamic batch dimension, written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.standard_normal((n_in, hidden)).astype(np.float32),
        "b1": rng.standard_normal(hidden).astype(np.float32),
        "w2": rng.standard_normal((hidden, n_out)).astype(np.float32),
        "b2": rng.standard_normal(n_out).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["scores"]),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_out])]
    if two_outputs:
        nodes.append(helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])], outputs,
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


def mlp_reference(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ weights["w1"] + weights["b1"], 0)
    return h @ weights["w2"] + weights["b2"]


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx")
    weights = build_onnx_mlp(path / "model.onnx", two_outputs=True)
    return path, weights


@pytest.fixture
def controlled_dir(tmp_path):
    def make(**settings):
        (tmp_path / "controlled.json").write_text(json.dumps(settings))
        return tmp_path

    return make


CONTROLLED = "tests.helpers.test_handler:ControlledHandler"


@pytest.fixture(scope="session")
def torchserve_archives(tmp_path_factory, sklearn_dir):
    """Archives made by the real torch-model-archiver (tests/helpers/torch_models.py)."""
    from tests.helpers.torch_models import build_archives

    return build_archives(tmp_path_factory.mktemp("archives"), sklearn_model=sklearn_dir / "model.joblib")


@pytest.fixture(scope="session")
def tf_saved_model(tmp_path_factory):
    """TF Serving's layout: <model>/1/saved_model.pb with a signature per case (tests/helpers/tf_models.py)."""
    pytest.importorskip("tensorflow", reason="needs tensorflow (pip install 'hyperserve[tensorflow]')")
    from tests.helpers.tf_models import save_cases

    root = tmp_path_factory.mktemp("tf")
    save_cases(root / "1")
    return root


def _serve_until_answering(command: list[str], url: str, what: str, env: dict | None = None):
    """Start a storage server and wait until ``url`` answers (any status)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}: {' '.join(command)}")
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{what} did not start: {' '.join(command)}")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback (moto[server], a test dependency): its endpoint URL."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        pytest.fail("moto_server is not installed (pip install -e '.[test]' installs moto[server])")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve_until_answering([exe, "-H", "127.0.0.1", "-p", str(port)], url, "moto's S3 server")
    yield url
    proc.terminate()
    proc.wait(10)


AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed development key (public, in Microsoft's documentation).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(url: str, key: str = AZURITE_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={url}/{AZURITE_ACCOUNT};")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite's Blob service on loopback (the npm package; scripts/test.sh installs it into
    build/azurite): its blob endpoint URL."""
    exe = ROOT / "build" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        found = shutil.which("azurite-blob")
        if found is None:
            pytest.fail("Azurite is not installed: scripts/test.sh installs it (npm install --prefix build/azurite "
                        "azurite)")
        exe = Path(found)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path_factory.mktemp("azurite")
    proc = _serve_until_answering([str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                                   str(data), "--silent", "--skipApiVersionCheck", "--loose"], url, "Azurite")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """gcp-storage-emulator on loopback, started and stopped here."""
    exe = shutil.which("gcp-storage-emulator", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        pytest.fail("gcp-storage-emulator is not installed (pip install -e '.[test]' installs it)")
    port = free_port()
    data_dir = tmp_path_factory.mktemp("gcs")
    proc = subprocess.Popen([exe, "-d", str(data_dir), "start", "--host", "127.0.0.1", "--port", str(port),
                             "--in-memory", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(host + "/storage/v1/b", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the GCS emulator did not start")
    yield host
    proc.terminate()
    proc.wait(10)
