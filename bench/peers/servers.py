"""How each server under comparison starts, when it is ready, and what a workload sends it.

Every server speaks its own protocol: Vertex `{"instances"}` for hyperserve and Google's CPR
server, KServe v1 for KServe, Open Inference Protocol v2 for MLServer, BentoML's JSON API for
BentoML. The two references (an empty uvicorn ASGI app, nginx with a fixed body) run no model.
"""

from __future__ import annotations

import json
import os
from functools import partial
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / ".venvs"
PEERS = Path(__file__).resolve().parent


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_url: str  # GET answers 200 once the server can serve
    predict_url: str
    grpc_port: int = 0  # where its OIP v2 gRPC service listens (0: none)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    venv: str | None  # bench/.venvs/<venv>, installed by install.sh; None: this interpreter / system
    protocol: str  # vertex | kserve-v1 | v2 | bentoml | azureml | mlflow | any
    launch: Callable[[Path, str, int, Path, str], Launch]  # (model dir, model name, port, work dir, kind)
    takes_model: bool = True
    workloads: frozenset = frozenset({"W1", "W2", "W3"})
    missing_for: str = ""  # why a workload outside ``workloads`` cannot run

    def python(self) -> str:
        if self.venv is None:
            return sys.executable
        return str(VENVS / self.venv / "bin" / "python")

    def available(self) -> str | None:
        """None when it can run here, else what is missing."""
        if self.venv is not None and not Path(self.python()).exists():
            return f"not installed: bash bench/peers/install.sh {self.venv}"
        if self.name.endswith("-baseline") and not os.environ.get("HYPERSERVE_BASELINE"):
            return "not set up: HYPERSERVE_BASELINE=<a git worktree of the commit to compare with>"
        if self.name == "nginx" and shutil.which("nginx") is None:
            return "not installed: bash bench/peers/install.sh nginx"
        return None


IMAGE_HANDLER = "hyperserve.bench.peers.image_model:MeanColourHandler"


def _hyperserve(model_dir: Path, name: str, port: int, work: Path, kind: str, extra: tuple[str, ...] = ()) -> Launch:
    url = f"http://127.0.0.1:{port}"
    if kind == "image":
        extra = (*extra, "--framework", IMAGE_HANDLER)
    if kind == "torchscript":  # the directory also holds TorchServe's batch-size-1 variant
        model_dir = model_dir / "model.mar"
    grpc_port = free_port()
    return Launch([sys.executable, "-m", "hyperserve.server", "serve", str(model_dir), "--host", "127.0.0.1",
                   "--port", str(port), "--grpc-port", str(grpc_port), "--model-name", name, "--log-level",
                   "warning", "--workers", "1", *extra],
                  {}, ROOT, url + "/health", url + "/predict", grpc_port)


def _hyperserve_baseline(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    """hyperserve from the checkout $HYPERSERVE_BASELINE names (bench/peers/baseline.py): before and after."""
    url = f"http://127.0.0.1:{port}"
    return Launch([sys.executable, str(PEERS / "baseline.py"), "serve", str(model_dir), "--host", "127.0.0.1",
                   "--port", str(port), "--model-name", name, "--log-level", "warning", "--workers", "1"],
                  {"HYPERSERVE_BASELINE": os.environ.get("HYPERSERVE_BASELINE", "")}, ROOT,
                  url + "/health", url + "/predict")


def _cpr_env(model_dir: Path, port: int, kind: str) -> dict[str, str]:
    env = {
        "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/predict",
        "AIP_STORAGE_URI": str(model_dir),
        "PREDICTOR_MODULE": "google.cloud.aiplatform.prediction.sklearn.predictor",
        "PREDICTOR_CLASS": "SklearnPredictor",
        "HANDLER_MODULE": "google.cloud.aiplatform.prediction.handler", "HANDLER_CLASS": "PredictionHandler",
    }
    if kind == "image":
        env.update(PREDICTOR_MODULE="image_cpr", PREDICTOR_CLASS="MeanColourPredictor", PYTHONPATH=str(PEERS))
    return env


def _cpr(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    env = _cpr_env(model_dir, port, kind)
    argv = [str(VENVS / "cpr" / "bin" / "python"), "-m", "uvicorn", "--factory",
            "google.cloud.aiplatform.prediction.model_server:CprModelServer",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"]
    return Launch(argv, env, work, url + "/health", url + "/predict")


def _hyperserve_cpr(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    """hyperserve running Google's own SklearnPredictor from the same environment as the CPR image."""
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "hyperserve.server", "serve", "--host", "127.0.0.1", "--workers", "1",
            "--log-level", "warning"]
    return Launch(argv, _cpr_env(model_dir, port, kind), work, url + "/health", url + "/predict")


AZUREML_APP = ROOT / "containers" / "deploy" / "azureml" / "score"  # the deployment manifest's score.py


def _azureml_env(model_dir: Path) -> dict[str, str]:
    return {"AML_APP_ROOT": str(AZUREML_APP), "AZUREML_ENTRY_SCRIPT": "score.py", "AZUREML_MODEL_DIR": str(model_dir)}


def _azmlinfsrv(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    """Microsoft's Azure ML inference server (Flask under gunicorn, 1 sync worker) on an undecorated score.py."""
    url = f"http://127.0.0.1:{port}"
    argv = [str(VENVS / "azureml" / "bin" / "azmlinfsrv"), "--entry_script", "score.py", "--port", str(port)]
    return Launch(argv, _azureml_env(model_dir), AZUREML_APP, url + "/", url + "/score")


def _hyperserve_azureml(model_dir: Path, name: str, port: int, work: Path, kind: str,
                        baseline: bool = False) -> Launch:
    """hyperserve running the same score.py (--entry-script, from AZUREML_ENTRY_SCRIPT); ``baseline``:
    from the checkout $HYPERSERVE_BASELINE names, for a before and after."""
    url = f"http://127.0.0.1:{port}"
    start = [str(PEERS / "baseline.py")] if baseline else ["-m", "hyperserve.server"]
    argv = [sys.executable, *start, "serve", "--host", "127.0.0.1", "--port", str(port),
            "--grpc-port", "0", "--workers", "1", "--log-level", "warning"]
    env = {**_azureml_env(model_dir), "HYPERSERVE_BASELINE": os.environ.get("HYPERSERVE_BASELINE", "")}
    return Launch(argv, env, AZUREML_APP, url + "/", url + "/score")


def mlflow_model(model_dir: Path) -> Path:
    """W1's model as an MLflow model, saved by MLflow itself (bench/.venvs/mlflow) beside ``model_dir``."""
    import subprocess

    out = model_dir.parent / f"mlflow-{model_dir.name}"
    if not (out / "MLmodel").exists():
        subprocess.run([str(VENVS / "mlflow" / "bin" / "python"), str(PEERS / "make_mlflow_model.py"), str(model_dir),
                        str(out)], check=True, capture_output=True)
    return out


def _mlflow(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    """mlflow models serve (FastAPI under uvicorn, 1 worker), --env-manager local."""
    url = f"http://127.0.0.1:{port}"
    argv = [str(VENVS / "mlflow" / "bin" / "mlflow"), "models", "serve", "-m", str(mlflow_model(model_dir)),
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    return Launch(argv, {"PATH": f"{VENVS / 'mlflow' / 'bin'}:{os.environ.get('PATH', '')}"}, work,
                  url + "/ping", url + "/invocations")


def _hyperserve_mlflow(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "hyperserve.server", "serve", str(mlflow_model(model_dir)), "--host", "127.0.0.1",
            "--port", str(port), "--grpc-port", "0", "--workers", "1", "--log-level", "warning"]
    return Launch(argv, {}, ROOT, url + "/ping", url + "/invocations")


def _kserve(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    artifact = model_dir / ("model.onnx" if kind == "onnx" else "model.joblib")
    argv = [str(VENVS / "kserve" / "bin" / "python"), str(PEERS / "kserve_server.py"), "--model_name", name,
            "--model_path", str(artifact), "--http_port", str(port),
            "--grpc_port", str(port + 1), "--kind", kind]
    return Launch(argv, {}, work, f"{url}/v1/models/{name}", f"{url}/v1/models/{name}:predict", port + 1)


def _mlserver(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    model = work / name
    model.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        settings = {"name": name, "implementation": "image_mlserver.MeanColourModel"}
    elif kind == "onnx":
        shutil.copy(model_dir / "model.onnx", model / "model.onnx")
        settings = {"name": name, "implementation": "onnx_mlserver.OnnxModel", "parameters": {"uri": "./model.onnx"}}
    else:
        shutil.copy(model_dir / "model.joblib", model / "model.joblib")
        settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"}}
    (model / "model-settings.json").write_text(json.dumps(settings))
    (work / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": port + 1, "metrics_port": port + 2, "host": "127.0.0.1"}))
    argv = [str(VENVS / "mlserver" / "bin" / "mlserver"), "start", str(work)]
    return Launch(argv, {"PYTHONPATH": str(PEERS)}, work, f"{url}/v2/models/{name}/ready",
                  f"{url}/v2/models/{name}/infer", port + 1)


def _bentoml(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    service = "bentoml_service:ImageModel" if kind == "image" else "bentoml_service:Model"
    argv = [str(VENVS / "bentoml" / "bin" / "bentoml"), "serve", service, "--port", str(port),
            "--host", "127.0.0.1"]
    env = {"BENCH_MODEL_PATH": str(model_dir / "model.joblib"), "BENTOML_HOME": str(work / "bentoml-home")}
    return Launch(argv, env, PEERS, url + "/readyz", url + "/predict")


def _torchserve(model_dir: Path, name: str, port: int, work: Path, kind: str, archive: str = "model.mar") -> Launch:
    url = f"http://127.0.0.1:{port}"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.properties"
    config.write_text("\n".join([
        f"inference_address=http://127.0.0.1:{port}", f"management_address=http://127.0.0.1:{port + 1}",
        f"metrics_address=http://127.0.0.1:{port + 2}", "default_workers_per_model=1",
        "disable_token_authorization=true", "install_py_dep_per_model=false", f"model_store={model_dir}",
    ]) + "\n")
    argv = [str(VENVS / "torchserve" / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
            "--ts-config", str(config), "--model-store", str(model_dir), "--models", f"{name}={archive}",
            "--disable-token-auth"]
    env = {"LOG_LOCATION": str(work / "logs"), "METRICS_LOCATION": str(work / "logs")}
    return Launch(argv, env, work, f"{url}/ping", f"{url}/predictions/{name}")


def _uvicorn_empty(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(PEERS), "empty_asgi:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--loop", "uvloop",
            "--http", "httptools"]
    return Launch(argv, {}, ROOT, url + "/", url + "/predict")


def _thin_asgi(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(PEERS), "thin_asgi:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--loop", "uvloop",
            "--http", "httptools"]
    return Launch(argv, {"BENCH_MODEL_PATH": str(model_dir / "model.joblib")}, ROOT, url + "/", url + "/predict")


def _nginx(model_dir: Path, name: str, port: int, work: Path, kind: str) -> Launch:
    url = f"http://127.0.0.1:{port}"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
error_log {work}/logs/error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"predictions":[0]}}'; }}
  }}
}}
""")
    return Launch([shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(work)], {}, work, url + "/",
                  url + "/predict")


# The Open Inference Protocol workloads (run.py's OIP): v2 JSON, v2 binary, gRPC.
OIP_WORKLOADS = ("V1", "V2", "G1")

SERVERS: dict[str, Server] = {s.name: s for s in [
    Server("hyperserve", None, "vertex", _hyperserve, workloads=frozenset({"W1", "W2", "W3", "W4", *OIP_WORKLOADS})),
    Server("hyperserve-baseline", None, "vertex", _hyperserve_baseline, workloads=frozenset({"W1", "W2", "W3"})),
    # Metrics off (--metrics false): issue 19's cost check, W1 with and without them in one run.
    Server("hyperserve-nometrics", None, "vertex",
           lambda m, n, p, w, k: _hyperserve(m, n, p, w, k, ("--metrics", "false")), workloads=frozenset({"W1"})),
    Server("hyperserve-nobatch", None, "vertex",
           lambda m, n, p, w, k: _hyperserve(m, n, p, w, k, ("--max-batch-size", "1")),
           workloads=frozenset({"W1", "W2", "W3", "W4"})),
    Server("torchserve", "torchserve", "torchserve", _torchserve, workloads=frozenset({"W4"}),
           missing_for="TorchServe only serves its archives here (W4)"),
    # TorchServe's default (batch size 1): the same archive without its model-config.yaml.
    Server("torchserve-nobatch", "torchserve", "torchserve",
           lambda m, n, p, w, k: _torchserve(m, n, p, w, k, "model-nobatch.mar"), workloads=frozenset({"W4"}),
           missing_for="TorchServe only serves its archives here (W4)"),
    Server("cpr", "cpr", "vertex", _cpr),
    # The same CPR predictor under hyperserve (needs hyperserve[cpr] in this interpreter).
    Server("hyperserve-cpr", None, "vertex", _hyperserve_cpr, workloads=frozenset({"W1", "W2"})),
    Server("kserve", "kserve", "kserve-v1", _kserve, workloads=frozenset({"W1", "W2", "W3", *OIP_WORKLOADS})),
    Server("mlserver", "mlserver", "v2", _mlserver, workloads=frozenset({"W1", "W2", "W3", *OIP_WORKLOADS})),
    Server("bentoml", "bentoml", "bentoml", _bentoml),
    # An undecorated Azure ML score.py (W1 through the script), under Microsoft's server and under hyperserve.
    Server("azmlinfsrv", "azureml", "azureml", _azmlinfsrv, workloads=frozenset({"W1"}),
           missing_for="W1 only: the score.py serves W1's iris model"),
    Server("hyperserve-azureml", None, "azureml", _hyperserve_azureml, workloads=frozenset({"W1"}),
           missing_for="W1 only: the score.py serves W1's iris model"),
    Server("hyperserve-azureml-baseline", None, "azureml", partial(_hyperserve_azureml, baseline=True),
           workloads=frozenset({"W1"}), missing_for="W1 only: the score.py serves W1's iris model"),
    # W1's model saved as an MLflow model, under mlflow models serve and under hyperserve (natively).
    Server("mlflow", "mlflow", "mlflow", _mlflow, workloads=frozenset({"W1"}),
           missing_for="W1 only: the MLflow model is W1's iris model"),
    Server("hyperserve-mlflow", None, "mlflow", _hyperserve_mlflow, workloads=frozenset({"W1"}),
           missing_for="W1 only: the MLflow model is W1's iris model"),
    Server("thin-asgi", None, "vertex", _thin_asgi, workloads=frozenset({"W1", "W2"})),
    Server("uvicorn-empty", None, "any", _uvicorn_empty, takes_model=False,
           workloads=frozenset({"W1", "W2", "W3", "W4"})),
    Server("nginx", None, "any", _nginx, takes_model=False, workloads=frozenset({"W1", "W2", "W3", "W4"})),
]}


def request_body(protocol: str, instances: list, dtype: str = "FP64") -> bytes:
    """The same instances, written the way each protocol wants them."""
    if protocol == "torchserve":  # TorchServe's own route takes one row per request
        first = instances[0]
        return json.dumps(first if isinstance(first, dict) and "data" in first else {"data": first}).encode()
    if protocol == "v2" and instances and isinstance(instances[0], dict):  # {"b64": ...} images as BYTES
        return json.dumps({"inputs": [{"name": "image", "shape": [len(instances)], "datatype": "BYTES",
                                       "data": [inst["b64"] for inst in instances]}]}).encode()
    if protocol == "v2":
        flat: list = []
        for row in instances:
            flat.extend(row)
        return json.dumps({"inputs": [{"name": "predict", "shape": [len(instances), len(instances[0])],
                                       "datatype": dtype, "data": flat}]}).encode()
    if protocol == "mlflow":  # MLflow's scoring protocol: a tensor model's rows as "inputs"
        return json.dumps({"inputs": instances}).encode()
    return json.dumps({"instances": instances}).encode()


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env
