"""Same-run wrk comparison of hyperserve and reference servers on one workload.

Each server runs pinned to one core (--server-cpu), wrk to another (--client-cpu), one after the
other, same request. Writes bench/results/<date>-<host>-<name>.json and .md.

  python bench/wrk_compare.py --name iris-1row --duration 10 --connections 32

Needs wrk (Debian package) and uvicorn (pip install uvicorn) for the empty-ASGI reference.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
IRIS_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


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
    sock = re.search(r"Socket errors: (.*)", text)
    result["socket_errors"] = sock.group(1) if sock else ""
    return result


def run_wrk(url: str, lua: Path, args) -> dict:
    subprocess.run(["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{args.connections}", "-d2s",
                    "-s", str(lua), url], capture_output=True, check=True)  # warm-up
    out = subprocess.run(["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{args.connections}",
                          f"-d{args.duration}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True)
    return parse_wrk(out.stdout)


def serve(cmd: list[str], env: dict, cpu: str) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", cpu, *cmd], env={**os.environ, **env}, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="iris-1row")
    parser.add_argument("--model", default=str(ROOT / "examples" / "iris"))
    parser.add_argument("--body", default=IRIS_BODY)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--hyperserve-args", default="", help="extra flags for hyperserve serve")
    args = parser.parse_args()

    lua = Path(tempfile.mkdtemp()) / "post.lua"
    lua.write_text(LUA % args.body)
    rows = {}

    port = free_port()
    proc = serve([sys.executable, "-m", "hyperserve.server", "serve", args.model, "--host", "127.0.0.1",
                  "--port", str(port), *args.hyperserve_args.split()], {}, args.server_cpu)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        rows["hyperserve predict"] = run_wrk(f"http://127.0.0.1:{port}/predict", lua, args)
        rows["hyperserve GET /live (transport only)"] = run_wrk(f"http://127.0.0.1:{port}/live",
                                                                 lua.with_name("get.lua"), args) \
            if lua.with_name("get.lua").write_text('wrk.method = "GET"\n') else None
    finally:
        proc.terminate()
        proc.wait(30)

    port = free_port()
    proc = serve([sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench" / "peers"), "empty_asgi:app",
                  "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
                  "--loop", "uvloop", "--http", "httptools"], {}, args.server_cpu)
    try:
        time.sleep(1.5)
        wait_ready(f"http://127.0.0.1:{port}/")
        rows["empty uvicorn ASGI app (no model)"] = run_wrk(f"http://127.0.0.1:{port}/predict", lua, args)
    finally:
        proc.terminate()
        proc.wait(30)

    stamp = datetime.date.today().isoformat()
    host = socket.gethostname()
    meta = {"date": stamp, "host": host, "cpu": cpu_model(), "cores": os.cpu_count(),
            "server_cpu": args.server_cpu, "client_cpu": args.client_cpu, "duration_s": args.duration,
            "connections": args.connections, "body": args.body,
            "command": "python bench/wrk_compare.py " + " ".join(sys.argv[1:])}
    out = ROOT / "bench" / "results" / f"{stamp}-{host}-{args.name}"
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    base = rows["hyperserve predict"]["requests_per_s"]
    lines = [f"# {args.name} — {stamp}, {meta['cpu']} ({meta['cores']} cores), server on CPU {args.server_cpu}, "
             f"wrk -t1 -c{args.connections} on CPU {args.client_cpu}, {args.duration}s", "",
             f"`{meta['command']}`", "",
             "| server | req/s | p50 ms | p90 ms | p99 ms | vs hyperserve predict |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['requests_per_s']:,.0f} | {r.get('p50_ms')} | {r.get('p90_ms')} | "
                     f"{r.get('p99_ms')} | {r['requests_per_s'] / base:.2f}× |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
