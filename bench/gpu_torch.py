"""PyTorch on a GPU: what dynamic batching buys, measured over sockets on one machine.

  python -m hyperserve.bench.gpu_torch --out bench/results --duration 8

Serves a TorchScript MLP (512-4096-4096-10, float32) with hyperserve three ways — CUDA with
batching, CUDA one request per call (--max-batch-size 1), and CPU with batching — and drives each
with the load generator at several concurrencies, one row of 512 floats per request. Writes
<date>-gpu-torch.json and .md with the batch-size histogram of each run. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from . import loadgen, report

CONFIGS = {
    "cuda-batching": ("--device", "cuda"),
    "cuda-no-batching": ("--device", "cuda", "--max-batch-size", "1"),
    "cpu-batching": ("--device", "cpu"),
}


def build_model(path: Path, width: int = 4096) -> None:
    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(512, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                              torch.nn.ReLU(), torch.nn.Linear(width, 10)).eval()
    torch.jit.script(mlp).save(str(path))


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hyperserve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("hyperserve was not ready in time")


def measure(name: str, flags: tuple[str, ...], model_dir: Path, body: bytes, levels: list[int], args) -> list[dict]:
    port = 18080 + len(name)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "hyperserve.server", "serve", str(model_dir), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--log-level", "warning", *flags],
                            env={**os.environ}, start_new_session=True)
    try:
        wait_ready(url, proc)
        check = httpx.post(url + "/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
        check.raise_for_status()
        device = httpx.get(url + "/v1/models/model/metadata").json()
        target = loadgen.Target.parse(url + "/predict")
        request = loadgen.build_request(target, "POST", body, {"content-type": "application/json"})
        rows = []
        for concurrency in levels:
            before = httpx.get(url + "/v1/models/model/stats").json()["batch_sizes"]
            stats = loadgen.run(loadgen.LoadGenerator(target, [request], concurrency=concurrency,
                                                      duration=args.duration, warmup=args.warmup))
            after = httpx.get(url + "/v1/models/model/stats").json()["batch_sizes"]
            batches = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
            rows.append(report.summarize(stats, {"config": name, "concurrency": concurrency,
                                                 "framework": device.get("framework"), "batch_sizes": batches}))
            print(f"{name} c={concurrency}: {rows[-1]['requests_per_s']} req/s, "
                  f"p99 {rows[-1]['latency_ms'].get('p99')} ms", flush=True)
        return rows
    finally:
        proc.terminate()
        proc.wait(30)


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown GPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_torch: needs a CUDA GPU visible to torch", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="hyperserve-gpu-"))
    build_model(work / "model.pt")
    body = json.dumps({"instances": [[round(0.01 * i, 2) for i in range(512)]]}).encode()
    rows = []
    for name in args.configs.split(","):
        rows.extend(measure(name, CONFIGS[name], work, body, levels, args))
    meta = {"date": datetime.date.today().isoformat(), "gpu": gpu_name(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "model": "TorchScript MLP 512-4096-4096-10 float32",
            "request": "one row of 512 floats (Vertex JSON)", "duration_s": args.duration}
    lines = [f"# PyTorch on {meta['gpu']} ({meta['cpus']} CPUs), torch {meta['torch']}", "",
             f"{meta['model']}; {meta['request']}; {args.duration:g} s per level; hyperserve 1 worker.", "",
             "| config | concurrency | req/s | p50 ms | p99 ms | batch sizes (calls) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lat = r["latency_ms"]
        batches = ", ".join(f"{k}×{v}" for k, v in sorted(r["batch_sizes"].items(), key=lambda kv: int(kv[0]))[-6:])
        lines.append(f"| {r['config']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | {lat.get('p50')} | "
                     f"{lat.get('p99')} | {batches} |")
    report.save(Path(args.out) / f"{meta['date']}-gpu-torch", meta, rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
