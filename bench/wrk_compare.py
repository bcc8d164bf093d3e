"""The scheduler benchmark (issue 5's table) with wrk, a C load generator, as the client: the 1-row
iris predict on every server, in one run, with the same pinning.

  python -m hyperserve.bench.wrk_compare --duration 10 --connections 32
  python -m hyperserve.bench.wrk_compare --scaling      # 1 vs 2 worker processes, wrk on the same cores

Each server runs pinned to --server-cpu, wrk (-t1) to --client-cpu. Peers that are not installed
(bench/peers/install.sh) are listed as skipped. hyperserve's batch-size histogram over the run is
read from /v1/models/model/stats. --scaling runs hyperserve with 1 worker (at --connections and at
twice that) and then 2 workers (at twice that), the server and wrk (-t1, as in the table: a second
wrk thread costs more CPU per request than it adds) both unpinned on every core (or apart, with
--scaling-cpus on a machine with 4 cores or more), and reports the CPU each side spent per request. --rounds N measures everything N times, interleaved. Writes
bench/results/<date>-<host>-wrk-<name>.json and .md. Needs wrk (Debian package).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from . import report
from .peers.run import (RESULTS, _batch_histogram, build_w1, cpu_model, free_port, start, stop, wait_predicts,
                        wait_ready)
from .peers.servers import SERVERS, request_body

DEFAULT_SERVERS = "hyperserve,cpr,kserve,mlserver,bentoml,thin-asgi,uvicorn-empty"

POST_LUA = """wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
"""


def parse_wrk(text: str) -> dict:
    def to_ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
              "requests": int(re.search(r"(\d+) requests in", text).group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            result[f"p{pct}_ms"] = round(to_ms(m.group(1)), 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", text)
    result["socket_errors"] = socket_errors.group(1).strip() if socket_errors else ""
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (worker processes), from /proc."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # after the command's ")": state, ppid, ..., utime (14th field), stime (15th)
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # it exited meanwhile
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family = {pid}
    for _ in range(8):  # a few generations: a supervisor, its workers, what they spawn
        family |= {p for p, (ppid, _) in stats.items() if ppid in family}
    total = sum(ticks for p, (_, ticks) in stats.items() if p in family)
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, lua: Path | None, duration: int, cpus: str, connections: int,
            server_pid: int | None = None) -> dict:
    """wrk's numbers, and the CPU time per request that wrk and the server (with its workers) spent."""
    base = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}"]
    script = ["-s", str(lua)] if lua else []
    subprocess.run([*base, "-d2s", *script, url], capture_output=True, check=True)  # warm-up
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*base, f"-d{duration}s", "--latency", *script, url],
                         capture_output=True, text=True, check=True)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse_wrk(out.stdout)
    per_request = 1e6 / max(result["requests"], 1)
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    result["wrk_cpu_us_per_request"] = round(wrk_cpu * per_request, 1)
    if server_pid:
        result["server_cpu_us_per_request"] = round((cpu_seconds(server_pid) - server_before) * per_request, 1)
    return result


def measure(server_name: str, model_dir: Path, instances: list, work: Path, args, *, extra: tuple[str, ...] = (),
            server_cpus: str, client_cpus: str, connections: int, live: bool = False) -> dict:
    """One server: its predict under wrk (and hyperserve's /live, transport only)."""
    server = SERVERS[server_name]
    port = free_port()
    launch = server.launch(model_dir, "model", port, work / server_name, "sklearn")
    launch.argv = [*launch.argv, *extra]  # hyperserve with more flags (the last --workers wins)
    launch.cwd.mkdir(parents=True, exist_ok=True)
    log = (work / f"{server_name}{'-'.join(extra)}.log").open("w")
    proc = start(launch, server_cpus, log)
    try:
        wait_ready(launch.ready_url, proc, 180)
        body = request_body(server.protocol, instances)
        wait_predicts(launch.predict_url, body, proc, 120)
        lua = work / f"{server_name}.lua"
        lua.write_text(POST_LUA % body.decode())
        base = launch.ready_url.rsplit("/", 1)[0]
        before = _batch_histogram(base) if server_name == "hyperserve" else None
        row = run_wrk(launch.predict_url, lua, args.duration, client_cpus, connections, proc.pid)
        row["protocol"] = server.protocol
        if before is not None:
            after = _batch_histogram(base) or {}
            row["batch_sizes"] = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        rows = {server_name: row}
        if live:
            rows[f"{server_name} GET /live (transport only)"] = run_wrk(
                f"http://127.0.0.1:{port}/live", None, args.duration, client_cpus, connections, proc.pid)
        return rows
    finally:
        stop(proc)
        log.close()


def histogram_text(batches: dict | None) -> str:
    if not batches:
        return ""
    total = sum(batches.values())
    top = sorted(batches.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{size}: {100 * n / total:.1f}%" for size, n in top) + f" of {total:,} calls"


def median_round(rounds: list[dict], measure: str = "requests_per_s") -> dict:
    """The round with the median ``measure`` (the lower middle one of an even count)."""
    ranked = sorted(rounds, key=lambda r: r[measure])
    return ranked[(len(ranked) - 1) // 2]


def median_ratio(rounds: list[dict], reference: list[dict], measure: str = "requests_per_s") -> float:
    """The median over rounds of ``measure`` against the reference's in the same round."""
    ratios = sorted(r[measure] / ref[measure] for r, ref in zip(rounds, reference))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def scaling_bound(one: list[dict], two: list[dict]) -> str:
    """What two workers can reach when wrk shares their cores: if one worker spends s µs of CPU per
    request and wrk w, two cores serve at most 2/(s + w) requests per µs against one worker's 1/s."""
    s = median_round(one, "server_cpu_us_per_request")["server_cpu_us_per_request"]
    w = median_round(two, "wrk_cpu_us_per_request")["wrk_cpu_us_per_request"]
    return (f"CPU per request (medians): one worker {s} µs, wrk {w} µs with two workers. With wrk on the same "
            f"cores, two workers can reach at most 2·s/(s + w) = {2 * s / (s + w):.2f}× one worker; measured "
            f"{median_ratio(two, one):.2f}×.")


def table(runs: dict[str, list[dict]], reference: str) -> list[str]:
    """One row per server: its median round, the req/s of every round, and the median ratio to the
    reference measured in the same rounds."""
    ref = runs.get(reference)
    ref = ref if ref and "skipped" not in ref[0] else None
    several = any(len(rounds) > 1 for rounds in runs.values())
    lines = ["| server | req/s | p50 ms | p90 ms | p99 ms | non-2xx | " + (f"× {reference} | " if ref else "")
             + ("req/s each round | " if several else "") + "CPU µs/request: server, wrk | batch sizes (share of calls) |",
             "|---|---|---|---|---|---|" + ("---|" if ref else "") + ("---|" if several else "") + "---|---|"]
    for name, rounds in runs.items():
        if "skipped" in rounds[0]:
            lines.append(f"| {name} | skipped: {rounds[0]['skipped']} |")
            continue
        r = median_round(rounds)
        ratio = f" {median_ratio(rounds, ref):.2f}× |" if ref else ""
        each = " " + " / ".join(f"{x['requests_per_s']:,.0f}" for x in rounds) + " |" if several else ""
        cpu = f"{r.get('server_cpu_us_per_request', '?')}, {r.get('wrk_cpu_us_per_request', '?')}"
        lines.append(f"| {name} | {r['requests_per_s']:,.0f} | {r.get('p50_ms')} | {r.get('p90_ms')} | "
                     f"{r.get('p99_ms')} | {r.get('non_2xx', 0)} |{ratio}{each} {cpu} | "
                     f"{histogram_text(r.get('batch_sizes'))} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="iris-1row")
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"comma-separated (default: {DEFAULT_SERVERS})")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--scaling", action="store_true",
                        help="hyperserve with 1 and 2 workers, server and wrk unpinned (instead of the table)")
    parser.add_argument("--scaling-cpus", default="", metavar="SERVER:CLIENT",
                        help="with --scaling, the CPUs of the server and of wrk, e.g. 0,1:2,3 on a machine with "
                             "4 cores or more (default: both on every CPU)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, interleaved; the table shows each one's "
                             "median round and its median ratio to the reference within rounds")
    parser.add_argument("--out", type=Path, default=None,
                        help="results path without suffix (default: bench/results/<date>-<host>-wrk-<name>)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="hyperserve-wrk-"))
    model_dir, instances = build_w1(work)
    runs: dict[str, list[dict]] = {}  # each row's result in every round
    every_cpu = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    scaling_server_cpus, _, scaling_client_cpus = (args.scaling_cpus or f"{every_cpu}:{every_cpu}").partition(":")
    shared = set(scaling_server_cpus.split(",")) & set(scaling_client_cpus.split(","))
    # Rounds interleave the servers, so that a slow stretch of a shared machine lands on all of them.
    for _ in range(args.rounds):
        if args.scaling:
            # One worker under the table's load and under the two workers' load (which lets it run
            # fuller batches), then two workers, each with about the table's load.
            for workers, connections in ((1, args.connections), (1, 2 * args.connections),
                                         (2, 2 * args.connections)):
                got = measure("hyperserve", model_dir, instances, work, args, extra=("--workers", str(workers)),
                              server_cpus=scaling_server_cpus, client_cpus=scaling_client_cpus,
                              connections=connections)
                runs.setdefault(f"hyperserve --workers {workers}, {connections} connections", []).append(
                    got["hyperserve"])
        else:
            for name in args.servers.split(","):
                missing = SERVERS[name].available()
                if missing:
                    runs[name] = [{"skipped": missing}]
                    continue
                got = measure(name, model_dir, instances, work, args, server_cpus=args.server_cpu,
                              client_cpus=args.client_cpu, connections=args.connections, live=name == "hyperserve")
                for row_name, row in got.items():
                    runs.setdefault(row_name, []).append(row)

    stamp, host = datetime.date.today().isoformat(), socket.gethostname()
    command = "python -m hyperserve.bench.wrk_compare " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"date": stamp, "host": host, "cpu": cpu_model(), "cores": os.cpu_count(),
            "server_cpu": scaling_server_cpus if args.scaling else args.server_cpu,
            "client_cpu": scaling_client_cpus if args.scaling else args.client_cpu, "duration_s": args.duration, "connections": args.connections,
            "rounds": args.rounds, "command": command}
    out = args.out or RESULTS / f"{stamp}-{host}-wrk-{args.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.scaling:
        setup = (f"hyperserve on CPUs {scaling_server_cpus}, `wrk -t1` on CPUs {scaling_client_cpus}, "
                 f"{args.duration}s; with 2 workers "
                 "the batch sizes are those of the worker that answered the stats request")
        reference = f"hyperserve --workers 1, {args.connections} connections"
    else:
        setup = (f"server on CPU {args.server_cpu}, `wrk -t1 -c{args.connections}` on CPU {args.client_cpu}, "
                 f"{args.duration}s, body `{json.dumps({'instances': instances})}`")
        reference = "cpr" if "cpr" in runs and "skipped" not in runs["cpr"][0] else "hyperserve"
    if args.rounds > 1:
        setup += f"; {args.rounds} rounds, each server once per round"
    lines = [f"# {args.name} with wrk — {stamp}, {meta['cpu']} ({meta['cores']} cores)", "", setup, "",
             f"`{command}`", "", *table(runs, reference)]
    if args.scaling and shared:
        lines += ["", scaling_bound(runs[reference], runs[f"hyperserve --workers 2, {2 * args.connections} connections"])]
    report.save(out, meta, runs, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
