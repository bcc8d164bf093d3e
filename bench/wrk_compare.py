"""The same comparison with wrk (a C load generator) as the client: hyperserve's 1-row iris
predict and transport, next to an empty uvicorn ASGI app, same run, same pinning.

  python -m hyperserve.bench.wrk_compare --duration 10 --connections 32

Each server runs pinned to --server-cpu, wrk to --client-cpu. Writes
bench/results/<date>-<host>-wrk-<name>.json and .md. Needs wrk (Debian package) and uvicorn.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from . import report
from .peers.run import RESULTS, build_w1, cpu_model, free_port, start, stop, wait_ready
from .peers.servers import SERVERS

POST_LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def parse_wrk(text: str) -> dict:
    def to_ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            result[f"p{pct}_ms"] = round(to_ms(m.group(1)), 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    return result


def run_wrk(url: str, lua: Path | None, args) -> dict:
    base = ["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{args.connections}"]
    script = ["-s", str(lua)] if lua else []
    subprocess.run([*base, "-d2s", *script, url], capture_output=True, check=True)  # warm-up
    out = subprocess.run([*base, f"-d{args.duration}s", "--latency", *script, url],
                         capture_output=True, text=True, check=True)
    return parse_wrk(out.stdout)


def measure(server_name: str, model_dir: Path, work: Path, runs: list[tuple[str, str, Path | None]], args) -> dict:
    port = free_port()
    launch = SERVERS[server_name].launch(model_dir, "model", port, work / server_name, "sklearn")
    launch.cwd.mkdir(parents=True, exist_ok=True)
    proc = start(launch, args.server_cpu, subprocess.DEVNULL)
    try:
        wait_ready(launch.ready_url, proc, 120)
        base = launch.predict_url.rsplit("/", 1)[0]
        return {label: run_wrk(base + path, lua, args) for label, path, lua in runs}
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="iris-1row")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="hyperserve-wrk-"))
    model_dir, instances = build_w1(work)
    post = work / "post.lua"
    post.write_text(POST_LUA % json.dumps({"instances": instances}))
    rows = measure("hyperserve", model_dir, work, [("hyperserve predict", "/predict", post),
                                                   ("hyperserve GET /live (transport only)", "/live", None)], args)
    rows.update(measure("uvicorn-empty", model_dir, work, [("empty uvicorn ASGI app (no model)", "/predict", post)],
                        args))

    stamp, host = datetime.date.today().isoformat(), socket.gethostname()
    command = "python -m hyperserve.bench.wrk_compare " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"date": stamp, "host": host, "cpu": cpu_model(), "cores": os.cpu_count(), "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu, "duration_s": args.duration, "connections": args.connections,
            "command": command}
    out = RESULTS / f"{stamp}-{host}-wrk-{args.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    base = rows["hyperserve predict"]["requests_per_s"]
    lines = [f"# {args.name} with wrk — {stamp}, {meta['cpu']} ({meta['cores']} cores), server on CPU "
             f"{args.server_cpu}, wrk -t1 -c{args.connections} on CPU {args.client_cpu}, {args.duration}s", "",
             f"`{command}`", "", "| server | req/s | p50 ms | p90 ms | p99 ms | vs hyperserve predict |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['requests_per_s']:,.0f} | {r.get('p50_ms')} | {r.get('p90_ms')} | "
                     f"{r.get('p99_ms')} | {r['requests_per_s'] / base:.2f}× |")
    report.save(out, meta, rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
