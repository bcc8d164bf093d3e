"""Batch prediction throughput, in one run with interleaved rounds (issue 17's table):

  python -m hyperserve.bench.batch_compare --rows 1000000 --rounds 3

- **in process**: ``hyperserve batch`` on N iris rows from JSON lines (W1's LogisticRegression);
- **script**: the straightforward script doing the same work (bench/peers/batch_script.py: orjson
  per line, numpy, ``model.predict`` on batches of 64, orjson out);
- **endpoint → hyperserve**: ``hyperserve batch --endpoint`` POSTing batches of 64 to ``hyperserve
  serve`` (one worker, calls of up to 4096 rows, no hold) on the same machine; and to ``hyperserve
  serve MODEL`` as a user or a container starts it, with its defaults (a worker per core);
- **wrk → hyperserve**: each of those servers with wrk, a C client, POSTing the job's first request
  (64 rows) on as many connections as the job keeps requests in flight: the rows/s the server
  carries when its client costs next to nothing, the bound on what a faster client could give;
- **least client → hyperserve**: the same rows to each of those servers through the least a Python
  client can do (bench/peers/least_client.py: the job's HTTP client, request bodies, prediction
  split and output lines, and nothing else): the bound on what a leaner job client could give;
- **raw client → hyperserve**: the same again with no HTTP library and no event loop
  (bench/peers/raw_client.py: raw sockets on one epoll, answers framed by their Content-Length):
  the bound on what any Python client could give;
- **endpoint → CPR**: the same client POSTing batches of 64 to Google's CPR model server with its
  SklearnPredictor (the way Vertex runs a job on the CPR image; bench/peers/install.sh cpr), once
  with one uvicorn worker (as in W1) and once as the image's entrypoint starts it (its
  VERTEX_CPR_WORKERS_PER_CORE default: max(2, cores) workers). It is slow, so it scores the first
  --cpr-rows rows: rows/s is a rate either way;
- **the model on the same cores** (``--split-cpus MODEL:CLIENT``, by default the first half of the
  CPUs and the rest): the in-process job pinned to the model's CPUs, against ``--endpoint`` with
  the server pinned to those same CPUs (as it starts, and with no hold) and the job's client on the
  others. The rows above share every core between client and server, while the in-process job
  has them to itself; here the model gets the same cores either way, and the client's cost is
  not taken out of them;
- **Ray**: ``--engine ray`` on W2's MLP (784-64-10) with 1 actor and with 2, on a local cluster;
- with ``HYPERSERVE_BASELINE=<a worktree of an earlier commit>``, both in-process jobs and both
  endpoint jobs (client and server) on that code too, in the same rounds (before and after a change).

Rows/s exclude model loading (each engine's summary counts from its first shard; the script from
after its load). Peak RSS is each job process's own (wait4). Writes bench/results/<date>-vm-batch.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hyperserve.server.batch.cli import BATCH_SIZE, ENDPOINT_CONCURRENCY
from hyperserve.server.batch.instances import request_body

from .peers.run import build_w1, build_w2, cpu_model, wait_ready
from .peers.servers import ROOT, VENVS, _cpr, free_port, python_env
from .wrk_compare import POST_LUA, cpu_seconds, median_ratio, run_wrk

RESULTS = ROOT / "bench" / "results"
CPR_IMAGE_DEFAULT = "endpoint → CPR, as its image starts it (2 workers here)"
# The endpoint server tuned for a job on the same 2 cores: one worker (the client needs the other
# core), calls merged up to 4096 rows, and no adaptive hold for partners (a job's client sends its
# next requests only after it has written the answers, longer than the hold).
ENDPOINT_TUNED = ("--workers", "1", "--max-batch-size", "4096", "--max-queue-delay-us", "1")
# On cores of its own (--split-cpus), a worker per core as it starts; no hold, as above.
ENDPOINT_SPLIT_TUNED = ("--max-batch-size", "4096", "--max-queue-delay-us", "1")


def iris_jsonl(path: Path, rows: int) -> Path:
    if path.exists() and sum(1 for _ in open(path, "rb")) == rows:
        return path
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for start in range(0, rows, 100_000):
            block = x[rng.integers(0, len(x), min(100_000, rows - start))]
            f.write("".join(f"[{a:.1f}, {b:.1f}, {c:.1f}, {d:.1f}]\n" for a, b, c, d in block))
    return path


def w2_jsonl(path: Path, rows: int) -> Path:
    if path.exists() and sum(1 for _ in open(path, "rb")) == rows:
        return path
    rng = np.random.default_rng(1)
    with open(path, "wb") as f:
        for start in range(0, rows, 5000):
            block = rng.random((min(5000, rows - start), 784), dtype=np.float32)
            np.savetxt(f, block, fmt="%.3f", delimiter=",", header="", comments="", newline="]\n[")
    data = path.read_bytes()  # savetxt writes "row]\n[row]\n[": make every line one array
    path.write_bytes(b"[" + data[:-1])
    return path


def _peak_rss_kb(pid: int) -> int:
    """The process's and its children's (job workers') peak RSS so far (VmHWM: per process, never
    inherited across fork and exec, unlike getrusage's)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """``argv`` on ``cpus`` only (taskset's list, e.g. "0" or "0-3"); as it is when None."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def split_cpus(spec: str) -> tuple[str, str] | None:
    """--split-cpus: "MODEL:CLIENT"; by default the first half of this process's CPUs and the rest
    (None on one CPU: nothing to split)."""
    if spec:
        model, _, client = spec.partition(":")
        if not model or not client:
            raise SystemExit(f"--split-cpus wants MODEL:CLIENT, e.g. 0:1 or 0-3:4-7, got {spec!r}")
        return model, client
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return ",".join(map(str, cpus[:half])), ",".join(map(str, cpus[half:]))


def run_job(argv: list[str], env: dict | None = None, cpus: str | None = None) -> dict:
    """A job process (on ``cpus`` when given); its summary (its stdout) with its peak RSS (all its
    processes together)."""
    proc = subprocess.Popen(pinned(argv, cpus), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(ROOT),
                            env={**python_env(), **(env or {})})
    peak = {"kb": 0}

    def watch():
        while proc.poll() is None:
            peak["kb"] = max(peak["kb"], _peak_rss_kb(proc.pid))
            time.sleep(0.05)

    import threading

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = proc.stdout.read()
    proc.wait()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    summary = json.loads(out)
    summary["peak_rss_mb"] = round(peak["kb"] / 1024, 1)
    return summary


def hyperserve_argv(*args, baseline: bool = False) -> list[str]:
    """``baseline``: the checkout $HYPERSERVE_BASELINE names (bench/peers/baseline.py), for before and after."""
    start = [str(ROOT / "bench" / "peers" / "baseline.py")] if baseline else ["-m", "hyperserve.server"]
    return [sys.executable, *start, *map(str, args)]


def batch_argv(*args, baseline: bool = False) -> list[str]:
    return hyperserve_argv("batch", *args, "--no-progress", "--log-level", "warning", baseline=baseline)


class Served:
    """A server for the job to call, run in ``cwd`` (CPR copies its model's files into its own)."""

    def __init__(self, argv, env, ready_url, cwd: Path = ROOT, cpus: str | None = None):
        self.proc = subprocess.Popen(pinned(argv, cpus), env={**python_env(), **env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=str(cwd), start_new_session=True)
        wait_ready(ready_url, self.proc, 120)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def server_alone(url: str, body: bytes, rows: int, server_pid: int, work: Path, seconds: int = 5) -> dict:
    """The server's rows/s under wrk (one thread) POSTing ``body`` (``rows`` instances) on as many
    connections as a job keeps requests in flight, and the CPU each side spent a row."""
    lua = work / "job-request.lua"
    lua.write_text(POST_LUA % body.decode())
    wrk = run_wrk(url, lua, seconds, f"0-{os.cpu_count() - 1}", ENDPOINT_CONCURRENCY, server_pid)
    if wrk["non_2xx"] or wrk["socket_errors"]:
        raise SystemExit(f"wrk against {url}: {wrk['non_2xx']} answers not 2xx, socket errors {wrk['socket_errors']!r}")
    return {"rows_per_s": wrk["requests_per_s"] * rows,
            "client_cpu_ns_per_row": round(wrk["wrk_cpu_us_per_request"] * 1000 / rows),
            "server_cpu_ns_per_row": round(wrk["server_cpu_us_per_request"] * 1000 / rows)}


def serve_iris(model_dir: Path, flags, baseline: bool = False, cpus: str | None = None) -> tuple[Served, str]:
    """``hyperserve serve`` on the model with ``flags`` (on ``cpus`` when given); it and its predict URL."""
    port = free_port()
    served = Served(hyperserve_argv("serve", model_dir, "--host", "127.0.0.1", "--port", port, "--grpc-port", 0,
                                    *flags, "--log-level", "warning", baseline=baseline),
                    {}, f"http://127.0.0.1:{port}/health", cpus=cpus)
    return served, f"http://127.0.0.1:{port}/predict"


def endpoint_job(served: Served, url: str, source: Path, output: Path, cpus: str | None = None) -> dict:
    """``hyperserve batch --endpoint`` on ``source`` against ``served`` (the job on ``cpus`` when
    given): its summary, with the server's CPU a row."""
    before = cpu_seconds(served.proc.pid)
    job = run_job(batch_argv("--input", source, "--format", "jsonl", "--output", output, "--endpoint", url), cpus=cpus)
    job["server_cpu_ns_per_row"] = round((cpu_seconds(served.proc.pid) - before) * 1e9 / job["instances"])
    return job


def python_client(script: str, url: str, source: Path, server_pid: int, work: Path) -> dict:
    """The same rows through one of the bench's lean Python clients (bench/peers/least_client.py,
    raw_client.py): what a leaner job client could give against this server."""
    before = cpu_seconds(server_pid)
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / script), url, str(source),
                          str(work / "out" / script.replace(".py", ".jsonl"))], capture_output=True, check=True,
                         env=python_env())
    result = json.loads(run.stdout)
    result["server_cpu_ns_per_row"] = round((cpu_seconds(server_pid) - before) * 1e9 / result["instances"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cpr-rows", type=int, default=20_000)
    parser.add_argument("--w2-rows", type=int, default=60_000, help="rows of the W2 file; the Ray job reads it 5 times")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", default="",
                        help="comma-separated: iris (all of its rows), cpr, endpoint, split, ray")
    parser.add_argument("--split-cpus", default="", metavar="MODEL:CLIENT",
                        help="the model's CPUs and the endpoint client's, for the rows with the model on the same "
                             "cores (default: the first half of the CPUs and the rest; e.g. 0:1, or 0-3:4-7)")
    parser.add_argument("--work", default=str(ROOT / "bench" / ".work" / "batch"))
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    iris_dir, _ = build_w1(work)
    source = iris_jsonl(work / f"iris-{args.rows}.jsonl", args.rows)
    cpr_source = iris_jsonl(work / f"iris-{args.cpr_rows}.jsonl", args.cpr_rows)
    if "cpr" not in skip and not (VENVS / "cpr" / "bin" / "python").exists():
        raise SystemExit("the CPR peer is not installed: bash bench/peers/install.sh cpr (or --skip cpr)")

    def fresh(path: Path) -> Path:
        shutil.rmtree(path, ignore_errors=True)
        return path

    def out(name: str) -> Path:
        return fresh(work / "out" / name)

    cpus = split_cpus(args.split_cpus)
    if cpus is None:
        skip.add("split")
    model_cpus, client_cpus = cpus or ("", "")
    rows: dict[str, list[dict]] = {}
    split_rows: dict[str, list[dict]] = {}  # the model on the same cores (--split-cpus)
    for round_ in range(0 if "iris" in skip else args.rounds):
        results = {
            "in process (2 workers, the default here)": run_job(batch_argv(iris_dir, "--input", source, "--format",
                                                                          "jsonl", "--output", out("local"))),
            "in process, 1 worker": run_job(batch_argv(iris_dir, "--input", source, "--format", "jsonl",
                                                       "--output", out("local1"), "--workers", 1)),
            "script": None,
        }
        if os.environ.get("HYPERSERVE_BASELINE"):  # the same two jobs on the code before a change
            for name, workers in (("in process (2 workers), baseline", 2), ("in process, 1 worker, baseline", 1)):
                results[name] = run_job(batch_argv(iris_dir, "--input", source, "--format", "jsonl", "--output",
                                                   out("baseline"), "--workers", workers, baseline=True))
        script = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "batch_script.py"),
                                 str(iris_dir / "model.joblib"), str(source), str(work / "out" / "script.jsonl")],
                                capture_output=True, check=True, env=python_env())
        results["script"] = json.loads(script.stdout)
        if "endpoint" not in skip:
            with source.open("rb") as lines:
                first_rows = [line.strip() for line in itertools.islice(lines, BATCH_SIZE)]
            first_request = request_body(first_rows, None)
            servers = [("endpoint → hyperserve", ENDPOINT_TUNED, False),
                       ("endpoint → hyperserve as it starts (defaults)", (), False)]
            if os.environ.get("HYPERSERVE_BASELINE"):
                servers += [("endpoint → hyperserve, baseline", ENDPOINT_TUNED, True),
                            ("endpoint → hyperserve as it starts (defaults), baseline", (), True)]
            for name, flags, baseline in servers:
                served, url = serve_iris(iris_dir, flags, baseline=baseline)
                try:
                    results[name] = endpoint_job(served, url, source, out("endpoint"))
                    if not baseline:
                        for client, script in (("least client", "least_client.py"), ("raw client", "raw_client.py")):
                            results[name.replace("endpoint", client, 1)] = python_client(
                                script, url, source, served.proc.pid, work)
                    if not baseline and shutil.which("wrk"):
                        results[name.replace("endpoint", "wrk", 1)] = server_alone(
                            url, first_request, len(first_rows), served.proc.pid, work)
                finally:
                    served.stop()
        if "split" not in skip:
            split = {f"in process on CPUs {model_cpus}": run_job(batch_argv(
                iris_dir, "--input", source, "--format", "jsonl", "--output", out("split")), cpus=model_cpus)}
            for name, flags in ((f"endpoint → hyperserve on CPUs {model_cpus} as it starts, job on CPUs {client_cpus}",
                                 ()),
                                (f"endpoint → hyperserve on CPUs {model_cpus} {' '.join(ENDPOINT_SPLIT_TUNED)}, job on "
                                 f"CPUs {client_cpus}", ENDPOINT_SPLIT_TUNED)):
                served, url = serve_iris(iris_dir, flags, cpus=model_cpus)
                try:
                    split[name] = endpoint_job(served, url, source, out("endpoint"), cpus=client_cpus)
                finally:
                    served.stop()
            for name, result in split.items():
                split_rows.setdefault(name, []).append(result)
            print(f"round {round_ + 1}, the model on CPUs {model_cpus}: "
                  + ", ".join(f"{n} {r['rows_per_s']:,.0f} rows/s" for n, r in split.items()), flush=True)
        if "cpr" not in skip:
            for name, image_default in (("endpoint → CPR (batches of 64)", False),
                                        (CPR_IMAGE_DEFAULT, True)):
                port = free_port()
                launch = _cpr(iris_dir, "model", port, work, "sklearn")
                argv = launch.argv
                if image_default:  # the image's entrypoint: uvicorn workers = max(2, cores)
                    argv = [argv[0], "-m", "google.cloud.aiplatform.prediction.model_server"]
                served = Served(argv, launch.env, launch.ready_url, launch.cwd)
                try:
                    results[name] = run_job(batch_argv(
                        "--input", cpr_source, "--format", "jsonl", "--output", out("cpr"),
                        "--endpoint", launch.predict_url, "--concurrency", 8))
                finally:
                    served.stop()
        for name, result in results.items():
            rows.setdefault(name, []).append(result)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {r['rows_per_s']:,.0f} rows/s" for n, r in results.items()),
              flush=True)

    ray_rows: dict[int, list[dict]] = {}
    if "ray" not in skip:
        mlp_dir, _ = build_w2(work)
        w2 = w2_jsonl(work / f"w2-{args.w2_rows}.jsonl", args.w2_rows)
        ray = str(Path(sys.executable).parent / "ray")
        # The job writes each 4.7 KB instance back out (1.4 GB): on tmpfs, so that the page cache's
        # writeback does not take a share of the two cores the actors are measured on.
        ray_out = Path("/dev/shm/hyperserve-bench") if Path("/dev/shm").is_dir() else work / "out"
        ray_port = free_port()
        subprocess.run([ray, "start", "--head", "--port", str(ray_port), "--num-cpus", "2", "--disable-usage-stats",
                        "--include-dashboard", "false"], check=True, capture_output=True)
        try:
            # Untimed: the cluster's first Ray Data job starts Ray Data's own actors, which take a
            # share of the cores for seconds, and would slow whichever run came first.
            run_job(batch_argv(mlp_dir, "--input", w2, "--format", "jsonl", "--output", fresh(ray_out / "warm-up"),
                               "--engine", "ray", "--ray-address", f"127.0.0.1:{ray_port}"))
            for round_ in range(args.rounds):
                for actors in (1, 2):
                    # Each run starts with the same free memory: the last run's output is deleted
                    # first: a 2-actor job with 2.8 GB of earlier outputs on tmpfs ran 20-25% slower
                    # on this VM (likely the host faulting in pages the guest had not used yet).
                    shutil.rmtree(ray_out, ignore_errors=True)
                    result = run_job(batch_argv(mlp_dir, "--input", ",".join([str(w2)] * 5), "--format", "jsonl",
                                                "--output", ray_out / f"ray{actors}", "--engine", "ray",
                                                "--ray-actors",
                                                actors, "--ray-address", f"127.0.0.1:{ray_port}", "--rows-per-shard",
                                                5000, "--intra-op-threads", 1))
                    ray_rows.setdefault(actors, []).append(result)
                    print(f"ray round {round_ + 1}, {actors} actor(s): {result['rows_per_s']:,.0f} rows/s", flush=True)
        finally:
            subprocess.run([ray, "stop", "--force"], capture_output=True)
            shutil.rmtree(ray_out, ignore_errors=True)

    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "rows": args.rows, "cpr_rows": args.cpr_rows, "w2_rows": args.w2_rows, "rounds": args.rounds,
            "skip": args.skip}
    if "iris" not in skip:  # a 1M-row job's memory against a job a tenth its size: the job streams
        small = iris_jsonl(work / f"iris-{args.rows // 10}.jsonl", args.rows // 10)
        small_rss = run_job(batch_argv(iris_dir, "--input", small, "--format", "jsonl", "--output", out("small")))
        one_rss = run_job(batch_argv(iris_dir, "--input", source, "--format", "jsonl", "--output", out("small"),
                                     "--workers", 1))
        small_one = run_job(batch_argv(iris_dir, "--input", small, "--format", "jsonl", "--output", out("small"),
                                       "--workers", 1))
        meta.update(small_job_rows=args.rows // 10, small_job_peak_rss_mb=small_rss["peak_rss_mb"],
                    one_worker_peak_rss_mb={"small": small_one["peak_rss_mb"], "full": one_rss["peak_rss_mb"]})
    if split_rows:
        meta.update(model_cpus=model_cpus, client_cpus=client_cpus)
    doc = {"meta": meta, "iris": rows, "iris_split": split_rows, "ray_w2": {str(k): v for k, v in ray_rows.items()}}
    stem = RESULTS / (f"{meta['date']}-vm-batch" + ("-ray" if "iris" in skip else ""))
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    stem.with_suffix(".md").write_text(markdown(doc))
    print(stem.with_suffix(".md").read_text())
    return 0


def median(values) -> float:
    return float(np.median(list(values)))


def markdown(doc: dict) -> str:
    meta, iris, ray = doc["meta"], doc["iris"], doc["ray_w2"]
    lines = [f"# Batch prediction, {meta['date']}", "",
             f"{meta['cpu']}, {meta['cores']} cores; medians of {meta['rounds']} interleaved rounds. "
             f"`python -m hyperserve.bench.batch_compare --rows {meta['rows']} --rounds {meta['rounds']}"
             + (f" --skip {meta['skip']}" if meta.get("skip") else "") + "`"]
    if iris:
        first = next(iter(iris))
        local = median(r["rows_per_s"] for r in iris[first])
        lines += ["", f"## {meta['rows']:,} iris rows from JSON lines (W1's LogisticRegression)", "",
                  "| how | rows/s | in process (2 workers) ÷ this | peak RSS (MB, every process of the job) "
                  "| server's CPU a row (ns) | client's CPU a row (ns): wrk's, the least or the raw client's |",
                  "|---|---:|---:|---:|---:|---:|"]

        def cell(runs, key):
            return f"{median(r[key] for r in runs):.0f}" if key in runs[0] else ""

        for name, runs in iris.items():
            rate = median(r["rows_per_s"] for r in runs)
            lines.append(f"| {name} | {rate:,.0f} | {local / rate:.2f}× | {cell(runs, 'peak_rss_mb')} "
                         f"| {cell(runs, 'server_cpu_ns_per_row')} | {cell(runs, 'client_cpu_ns_per_row')} |")
        one = meta["one_worker_peak_rss_mb"]
        lines += ["", f"CPR scores the first {meta['cpr_rows']:,} rows (rows/s is a rate). The job streams: peak "
                  f"RSS of {meta['small_job_rows']:,} rows against {meta['rows']:,}: "
                  f"{meta['small_job_peak_rss_mb']:.0f} against {median(r['peak_rss_mb'] for r in iris[first]):.0f} "
                  f"MB with 2 workers, {one['small']:.0f} against {one['full']:.0f} MB with 1. The endpoint server: "
                  f"`hyperserve serve {' '.join(ENDPOINT_TUNED)}`; as it starts: `hyperserve serve MODEL`. wrk: one "
                  f"thread, {ENDPOINT_CONCURRENCY} connections, the job's first request of {BATCH_SIZE} rows, "
                  "for 5 s on each server (what the server carries when its client costs next to nothing). The least "
                  "client (bench/peers/least_client.py) and the raw client (bench/peers/raw_client.py): the same "
                  "rows, their CPU counted after their start-up."]
    split = doc.get("iris_split")
    if split:
        first = next(iter(split))
        lines += ["", f"## The model on the same cores: CPUs {meta['model_cpus']}, the endpoint job's client on CPUs "
                  f"{meta['client_cpus']}", "",
                  f"The in-process job pinned to CPUs {meta['model_cpus']} (a worker per CPU), against `--endpoint` "
                  f"with the server pinned to the same CPUs and the job on CPUs {meta['client_cpus']}: the model "
                  "gets the same cores either way, and the client's cost is not taken out of them. The ratio is the "
                  "median of each round's.", "",
                  "| how | rows/s | of in process on the same CPUs | server's CPU a row (ns) |", "|---|---:|---:|---:|"]
        for name, runs in split.items():
            ratio = median_ratio(runs, split[first], "rows_per_s")
            server = f"{median(r['server_cpu_ns_per_row'] for r in runs):.0f}" if "server_cpu_ns_per_row" in runs[0] else ""
            lines.append(f"| {name} | {median(r['rows_per_s'] for r in runs):,.0f} | {ratio:.0%} | {server} |")
    if ray:
        one, two = median(r["rows_per_s"] for r in ray["1"]), median(r["rows_per_s"] for r in ray["2"])
        ratio = median_ratio(ray["2"], ray["1"], "rows_per_s")
        lines += ["", f"## Ray engine, {5 * meta['w2_rows']:,} rows of W2 (MLP 784-64-10), local cluster of 2 CPUs",
                  "", "`--rows-per-shard 5000 --intra-op-threads 1`, output on tmpfs; rows/s from the first shard an "
                  "actor began; the ratio is the median of each round's.", "",
                  "| actors | rows/s | ÷ 1 actor |", "|---:|---:|---:|",
                  f"| 1 | {one:,.0f} | 1.00× |", f"| 2 | {two:,.0f} | {ratio:.2f}× |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
