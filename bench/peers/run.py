"""Run chosen servers side by side on chosen workloads, same machine, same run, same pinning.

  python -m hyperserve.bench.peers.run --servers hyperserve,cpr,kserve,mlserver,bentoml,uvicorn-empty,nginx \\
      --workloads W1,W2 --duration 10

Each server in turn runs pinned to --server-cpu; this process (the load generator) pins itself to
--client-cpu. Writes bench/results/<date>-<host>.json, a markdown table with ratios against
hyperserve, and a latency CDF per workload. Peers are installed by bench/peers/install.sh.

Workloads: W1 one iris row to a scikit-learn LogisticRegression; W2 64×784 instances to a
scikit-learn MLPClassifier (784-64-10); W3 one 224×224×3 image as {"b64": ...} to a mean-colour
model written natively for each server (bench/peers/image_*.py); W4 one iris row to a TorchScript
4-8-3 MLP in a TorchServe archive (batchSize 32 in its model-config.yaml), served by TorchServe and by
hyperserve's TorchServe archive handler from the same model.mar.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from .. import loadgen, report
from .servers import ROOT, SERVERS, free_port, python_env, request_body

RESULTS = ROOT / "bench" / "results"


def build_w1(work: Path) -> tuple[Path, list]:
    """W1: one iris row to a scikit-learn LogisticRegression (built here, nothing downloaded)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model_dir = work / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), model_dir / "model.joblib")
    return model_dir, [[5.1, 3.5, 1.4, 0.2]]


def build_w2(work: Path) -> tuple[Path, list]:
    """W2: 64 instances of 784 floats to a scikit-learn MLPClassifier (784-64-10)."""
    import joblib
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    model_dir = work / "mlp"
    model_dir.mkdir(parents=True, exist_ok=True)
    xs = rng.random((512, 784), dtype=np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=5, random_state=0).fit(xs, rng.integers(0, 10, 512))
    joblib.dump(mlp, model_dir / "model.joblib")
    return model_dir, np.round(rng.random((64, 784), dtype=np.float32), 4).tolist()


def build_w3(work: Path) -> tuple[Path, list]:
    """W3: one 224×224×3 uint8 image as {"b64": ...} to a mean-colour model."""
    import base64

    model_dir = work / "image"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "image_model.json").write_text("{}")
    (model_dir / "model.joblib").write_bytes(b"")  # peers that insist on a model file get an empty one
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8).tobytes()
    return model_dir, [{"b64": base64.b64encode(image).decode()}]


def build_w4(work: Path) -> tuple[Path, list]:
    """W4: one iris row to a TorchScript 4-8-3 MLP in a TorchServe archive (built in the torchserve venv)."""
    from .servers import PEERS, VENVS

    model_dir = work / "torchscript"
    python = VENVS / "torchserve" / "bin" / "python"
    if not python.exists():
        raise RuntimeError("W4 needs the torchserve venv: bash bench/peers/install.sh torchserve")
    subprocess.run([str(python), str(PEERS / "make_w4.py"), str(model_dir)], check=True, capture_output=True)
    # Vertex's envelope for TorchServe handlers: one {"data": ...} row per instance.
    return model_dir, [{"data": [5.1, 3.5, 1.4, 0.2]}]


def build_v2(work: Path) -> tuple[Path, list]:
    """V2: 64 instances of 784 FP32 to an ONNX MLP (784-64-10, Gemm-Relu-Gemm), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.standard_normal((784, 64)).astype(np.float32) * 0.05,
               "b1": np.zeros(64, np.float32), "w2": rng.standard_normal((64, 10)).astype(np.float32) * 0.1,
               "b2": np.zeros(10, np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
         helper.make_node("Gemm", ["hr", "w2", "b2"], ["scores"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model_dir = work / "onnx-mlp"
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(model_dir / "model.onnx"))
    return model_dir, rng.random((64, 784), dtype=np.float32).tolist()


WORKLOADS = {"W1": build_w1, "W2": build_w2, "W3": build_w3, "W4": build_w4,
             "V1": build_w1, "V2": build_v2, "G1": build_w1}
KINDS = {"W1": "sklearn", "W2": "sklearn", "W3": "image", "W4": "torchscript", "V1": "sklearn", "V2": "onnx",
         "G1": "sklearn"}
# The Open Inference Protocol workloads: V1 one iris row as v2 JSON, V2 64×784 FP32 with the binary
# tensor extension (JSON to a server without it), G1 one iris row over gRPC ModelInfer.
OIP = {"V1": ("v2", "FP64"), "V2": ("v2-binary", "FP32"), "G1": ("grpc", "FP64")}
V2_BINARY = {"hyperserve", "hyperserve-nobatch", "kserve"}  # MLServer's REST API has no binary extension


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not ready within {timeout}s ({url})")


def wait_predicts(url: str, body: bytes, proc: subprocess.Popen, timeout: float,
                  headers: dict[str, str] | None = None) -> None:
    """Until predict answers 200: some servers answer their health route before their model is loaded."""
    deadline = time.monotonic() + timeout
    while True:
        check = httpx.post(url, content=body, headers={"content-type": "application/json", **(headers or {})},
                           timeout=30)
        if check.status_code == 200:
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"predict answered {check.status_code}: {check.text[:300]}")
        time.sleep(0.5)


def _oip(server_name: str, workload: str, port: int, grpc_port: int, instances: list, args, proc):
    """(protocol, body size, concurrency → generator, run) for an Open Inference Protocol workload."""
    from .. import grpc_loadgen, oip_requests

    protocol, datatype = OIP[workload]
    if protocol == "v2-binary" and server_name not in V2_BINARY:
        protocol = "v2"
    name = "x" if KINDS[workload] == "onnx" else "predict"
    tensors = [oip_requests.Tensor(name, datatype, np.asarray(instances, dtype=np.float32 if datatype == "FP32"
                                                               else np.float64))]
    if protocol == "grpc":
        target = grpc_loadgen.GrpcTarget("127.0.0.1", grpc_port, "model")
        request = oip_requests.grpc_request("model", tensors)
        deadline = time.monotonic() + args.ready_timeout
        while True:  # until one ModelInfer succeeds: the gRPC port may open after HTTP's
            check = grpc_loadgen.run(grpc_loadgen.GrpcLoadGenerator(target, request, concurrency=1, duration=None,
                                                                    total_requests=1))
            if check.statuses.get(200):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"gRPC ModelInfer failed: {dict(check.errors)}")
            time.sleep(0.5)
        return protocol, len(request), (lambda c: grpc_loadgen.GrpcLoadGenerator(
            target, request, concurrency=c, duration=args.duration, warmup=args.warmup)), grpc_loadgen.run
    url = f"http://127.0.0.1:{port}/v2/models/model/infer"
    body, headers = (oip_requests.binary_body(tensors) if protocol == "v2-binary"
                     else (oip_requests.json_body(tensors), {}))
    wait_predicts(url, body, proc, args.ready_timeout, headers)
    target = loadgen.Target.parse(url)
    request = loadgen.build_request(target, "POST", body, headers)
    return protocol, len(body), (lambda c: loadgen.LoadGenerator(target, [request], concurrency=c,
                                                                 duration=args.duration, warmup=args.warmup)), \
        loadgen.run


def measure(server_name: str, workload: str, model_dir: Path, instances: list, args, work: Path) -> list[dict]:
    """One server on one workload, at each concurrency level; the server starts once."""
    server = SERVERS[server_name]
    port = free_port()
    launch = server.launch(model_dir, "model", port, work / f"{server_name}-{workload}", KINDS[workload])
    launch.cwd.mkdir(parents=True, exist_ok=True)
    log = (work / f"{server_name}-{workload}.log").open("w")
    proc = start(launch, args.server_cpu, log)
    try:
        wait_ready(launch.ready_url, proc, args.ready_timeout)
        if workload in OIP:
            protocol, body_bytes, make, run = _oip(server_name, workload, port, launch.grpc_port, instances, args,
                                                   proc)
        else:
            protocol = server.protocol
            body = request_body(server.protocol, instances)
            body_bytes = len(body)
            wait_predicts(launch.predict_url, body, proc, args.ready_timeout)
            target = loadgen.Target.parse(launch.predict_url)
            request = loadgen.build_request(target, "POST", body, {})

            def make(c):
                return loadgen.LoadGenerator(target, [request], concurrency=c, duration=args.duration,
                                             warmup=args.warmup)
            run = loadgen.run
        rows = []
        for concurrency in args.levels:
            before = _batch_histogram(launch.ready_url.rsplit("/", 1)[0]) if server_name.startswith("hyperserve") else None
            stats = run(make(concurrency))
            batches = None
            if before is not None:
                after = _batch_histogram(launch.ready_url.rsplit("/", 1)[0]) or {}
                batches = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
            rows.append(report.summarize(stats, {"server": server_name, "workload": workload,
                                                 "protocol": protocol, "concurrency": concurrency,
                                                 "body_bytes": body_bytes, "batch_sizes": batches}))
        return rows
    finally:
        stop(proc)
        log.close()


def start(launch, cpu: str, log) -> subprocess.Popen:
    """The server in a session of its own, so stop() also reaps what it spawned (TorchServe's JVM)."""
    return subprocess.Popen(["taskset", "-c", cpu, *launch.argv], cwd=str(launch.cwd),
                            env={**python_env(), **launch.env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            time.sleep(0.5)  # let the group's other processes exit too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        break


def _batch_histogram(base_url: str) -> dict | None:
    try:
        stats = httpx.get(base_url + "/v1/models/model/stats", timeout=5)
    except httpx.HTTPError:
        return None
    return stats.json().get("batch_sizes", {}) if stats.status_code == 200 else None


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def markdown(all_rows: list[dict], meta: dict) -> str:
    top = max(meta["concurrency"])
    rows = [r for r in all_rows if "error" in r or r["concurrency"] == top]
    out = [f"# hyperserve vs peers — {meta['date']} on {meta['host']}", "",
           f"{meta['cpu']}, {meta['cores']} cores; each server pinned to CPU {meta['server_cpu']}, the load "
           f"generator (hyperserve bench's engine) to CPU {meta['client_cpu']}; closed loop, {top} connections, "
           f"{meta['duration_s']} s after {meta['warmup_s']} s warm-up.", "", f"`{meta['command']}`", ""]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == workload]
        base = next((r["requests_per_s"] for r in group if r["server"] == "hyperserve" and "error" not in r), None)
        out += [f"## {workload}", "", "| server | protocol | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | "
                "hyperserve is ×faster |", "|---|---|---|---|---|---|---|---|"]
        for r in group:
            if "error" in r:
                out.append(f"| {r['server']} | | — | | | | | not run: {r['error']} |")
                continue
            lat = r["latency_ms"]
            non_ok = sum(v for k, v in r["statuses"].items() if not k.startswith("2"))
            ratio = f"{base / r['requests_per_s']:.1f}×" if base and r["requests_per_s"] else ""
            out.append(f"| {r['server']} | {r['protocol']} | {r['requests_per_s']:,.0f} | {lat.get('p50', 0):.2f} | "
                       f"{lat.get('p99', 0):.2f} | {lat.get('p99.9', 0):.2f} | {non_ok} | {ratio} |")
        for r in group:
            if r.get("batch_sizes"):
                out += ["", f"{r['server']} batch sizes (instances per framework call: calls): "
                        + ", ".join(f"{k}: {v}" for k, v in sorted(r["batch_sizes"].items(), key=lambda kv: int(kv[0])))]
        sweep = [r for r in all_rows if r["workload"] == workload and "error" not in r]
        levels = sorted({r["concurrency"] for r in sweep})
        if len(levels) > 1:
            out += ["", "req/s by concurrency:", "", "| server | " + " | ".join(map(str, levels)) + " |",
                    "|---|" + "---|" * len(levels)]
            for name in dict.fromkeys(r["server"] for r in sweep):
                by_level = {r["concurrency"]: r["requests_per_s"] for r in sweep if r["server"] == name}
                out.append(f"| {name} | " + " | ".join(f"{by_level.get(c, 0):,.0f}" for c in levels) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="hyperserve,cpr,kserve,mlserver,bentoml,uvicorn-empty,nginx")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="32", help="connections; a comma list runs a sweep")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None, help="results path without suffix")
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in str(args.concurrency).split(",")]

    os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    work = Path(tempfile.mkdtemp(prefix="hyperserve-peers-"))
    rows = []
    for workload in args.workloads.split(","):
        try:
            model_dir, instances = WORKLOADS[workload](work / "models")
        except Exception as err:
            rows.append({"server": "-", "workload": workload, "error": f"cannot build {workload}: {err}"})
            print(f"{workload}: skipped ({err})")
            continue
        for name in args.servers.split(","):
            server = SERVERS[name]
            missing = server.available() if workload in server.workloads else (
                server.missing_for or f"{name} has no {workload} model in this harness")
            if missing:
                rows.append({"server": name, "workload": workload, "error": missing})
                print(f"{workload} {name}: skipped ({missing})")
                continue
            try:
                measured = measure(name, workload, model_dir, instances, args, work)
            except Exception as err:  # a peer that fails is reported, not fatal to the comparison
                measured = [{"server": name, "workload": workload, "error": f"{type(err).__name__}: {err}"}]
            rows.extend(measured)
            for row in measured:
                print(f"{workload} {name} c={row.get('concurrency', '-')}: " + (
                    row.get("error") or f"{row['requests_per_s']:,.0f} req/s, p99 {row['latency_ms'].get('p99')} ms"))
    stamp = datetime.date.today().isoformat()
    host = socket.gethostname()
    meta = {"date": stamp, "host": host, "cpu": cpu_model(), "cores": os.cpu_count(),
            "server_cpu": args.server_cpu, "client_cpu": args.client_cpu, "concurrency": args.levels,
            "duration_s": args.duration, "warmup_s": args.warmup, "work_dir": str(work),
            "command": "python -m hyperserve.bench.peers.run " + " ".join(argv if argv is not None else
                                                                          __import__("sys").argv[1:])}
    out = args.out or RESULTS / f"{stamp}-{host}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, meta))
    top = max(args.levels)
    for workload in dict.fromkeys(r["workload"] for r in rows):
        ok = [r for r in rows if r["workload"] == workload and "error" not in r]
        if ok:
            report.plot_cdf([r for r in ok if r["concurrency"] == top], out.with_name(f"{out.name}-{workload}-cdf.png"),
                            label="server", title=f"{workload}: latency CDF (closed loop, {top} connections)")
        if len(args.levels) > 1 and ok:
            report.plot_throughput(ok, out.with_name(f"{out.name}-{workload}-throughput.png"), series="server",
                                   title=f"{workload}: throughput vs concurrency")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
