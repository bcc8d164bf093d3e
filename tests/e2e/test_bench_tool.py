"""`hyperserve bench` and the peer harness: a short smoke against hyperserve itself, plus the
load generator's accounting (status codes, request counts, coordinated omission)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from hyperserve.bench import loadgen, report
from hyperserve.server.http import Response

from tests.conftest import ROOT, ServerProcess, free_port
from tests.helpers.http_stub import ServerThread

pytestmark = pytest.mark.e2e


class StubServer(ServerThread):
    """A tiny hyperserve transport whose route can stall, answer errors, or count requests."""

    def __init__(self, route):
        super().__init__(route)
        self.url += "/x"


def run_gen(url: str, **kwargs) -> loadgen.RunStats:
    target = loadgen.Target.parse(url)
    request = loadgen.build_request(target, "POST", b'{"instances": [1]}', {})
    return loadgen.run(loadgen.LoadGenerator(target, [request], **kwargs))


def test_counts_statuses_and_stops_after_n_requests():
    seen = []

    def route(request):
        seen.append(request)
        return Response.json({"ok": True}) if len(seen) % 4 else Response.error(503, "busy")

    server = StubServer(route)
    try:
        stats = run_gen(server.url, concurrency=4, duration=None, total_requests=400)
    finally:
        server.stop()
    summary = report.summarize(stats)
    assert summary["requests"] == 400
    assert summary["statuses"]["200"] + summary["statuses"]["503"] == 400
    assert 80 <= summary["statuses"]["503"] <= 120
    assert seen[0].body == b'{"instances": [1]}' and seen[0].headers["content-type"] == "application/json"


def test_open_loop_latency_includes_time_spent_waiting_for_a_stalled_server():
    """The server stalls 300 ms once; requests due during the stall must show it."""
    state = {"stalled": False}

    def route(request):
        if not state["stalled"] and time.monotonic() > state["stall_at"]:
            state["stalled"] = True

            async def stall():
                await asyncio.sleep(0.3)
                return Response.json({})
            return stall()
        return Response.json({})

    server = StubServer(route)
    state["stall_at"] = time.monotonic() + 0.7
    try:
        stats = run_gen(server.url, concurrency=1, duration=1.5, rate=200.0, warmup=0.2)
    finally:
        server.stop()
    summary = report.summarize(stats)
    # ~60 requests were due during the stall; with correction their latencies spread up to ~300 ms,
    # so well over 1% of all (~300) requests are slower than 100 ms.
    slow = sum(1 for v in stats.latencies_us if v > 100_000)
    assert slow > 20, summary["latency_ms"]
    assert summary["latency_ms"]["max"] >= 250


def test_cli_smoke_against_hyperserve(start_server, sklearn_dir, tmp_path):
    server = start_server([sklearn_dir])
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "hyperserve.server", "bench", server.url + "/predict",
                           "--from-signature", server.url + "/v1/models/model/metadata", "--duration", "1.5",
                           "--warmup", "0.5", "--concurrency", "1,8", "--json", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["concurrency"] for r in runs] == [1, 8]
    assert all(r["requests"] > 50 and set(r["statuses"]) == {"200"} for r in runs)
    assert "p99.9" in runs[0]["latency_ms"]
    assert out.with_name("run-cdf.png").stat().st_size > 1000
    assert out.with_name("run-throughput.png").stat().st_size > 1000
    assert "| 8 |" in proc.stdout


@pytest.mark.parametrize("protocol", ["v2", "v2-binary", "grpc"])
def test_cli_drives_the_open_inference_protocol(sklearn_dir, tmp_path, protocol):
    """--protocol: requests generated from the model's v2 metadata, over REST (JSON, binary) or gRPC;
    the server's own statistics count what the bench sent."""
    grpc_port = free_port()
    server = ServerProcess([str(sklearn_dir), "--grpc-port", str(grpc_port)]).wait_ready()
    try:
        url = f"grpc://127.0.0.1:{grpc_port}/model" if protocol == "grpc" else server.url + "/v2/models/model/infer"
        out = tmp_path / "run.json"
        proc = subprocess.run([sys.executable, "-m", "hyperserve.server", "bench", url, "--protocol", protocol,
                               "--rows", "3", "--requests", "200", "--warmup", "0", "--concurrency", "4",
                               "--json", str(out), "--no-progress"],
                              capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = json.loads(out.read_text())["runs"][0]
        assert run["protocol"] == protocol and run["requests"] >= 200 and set(run["statuses"]) == {"200"}
        stats = httpx.get(server.url + "/v2/models/model/stats").json()["model_stats"][0]
        assert stats["inference_count"] >= 600 and stats["inference_stats"]["fail"]["count"] == 0  # 3 rows each
    finally:
        server.stop()


def test_peer_harness_smoke(tmp_path):
    out = tmp_path / "peers"
    proc = subprocess.run([sys.executable, "-m", "hyperserve.bench.peers.run", "--servers",
                           "hyperserve,uvicorn-empty", "--workloads", "W1", "--duration", "1.5", "--warmup", "0.5",
                           "--concurrency", "8", "--server-cpu", "0", "--client-cpu", str(min(1, os.cpu_count() - 1)),
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    by_server = {r["server"]: r for r in results}
    assert by_server["hyperserve"]["requests_per_s"] > 0 and "error" not in by_server["hyperserve"]
    assert by_server["hyperserve"]["batch_sizes"]
    assert by_server["uvicorn-empty"]["requests_per_s"] > 0
    assert "## W1" in out.with_suffix(".md").read_text()
    assert (tmp_path / "peers-W1-cdf.png").exists()


def test_wrk_table_smoke(tmp_path):
    """The scheduler benchmark's harness (wrk as the client): every server measured in each of two
    interleaved rounds, hyperserve's batch sizes and /live row included, median ratios against the
    reference."""
    out = tmp_path / "wrk"
    proc = subprocess.run([sys.executable, "-m", "hyperserve.bench.wrk_compare", "--servers", "hyperserve,uvicorn-empty",
                           "--duration", "1", "--connections", "8", "--client-cpu", str(min(1, os.cpu_count() - 1)),
                           "--rounds", "2", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads(out.with_suffix(".json").read_text())["results"]
    assert set(runs) == {"hyperserve", "hyperserve GET /live (transport only)", "uvicorn-empty"}
    assert all(len(rounds) == 2 for rounds in runs.values())
    assert all(r["requests_per_s"] > 0 and r["non_2xx"] == 0 for rounds in runs.values() for r in rounds)
    assert all(sum(r["batch_sizes"].values()) > 0 for r in runs["hyperserve"])
    markdown = out.with_suffix(".md").read_text()
    assert "| hyperserve | " in markdown and "req/s each round" in markdown


def test_wrk_scaling_smoke(tmp_path):
    """--scaling: one worker at two loads, then two workers, with the CPU each side spent per
    request and the bound that wrk's share of the cores puts on two workers."""
    out = tmp_path / "scaling"
    proc = subprocess.run([sys.executable, "-m", "hyperserve.bench.wrk_compare", "--scaling", "--duration", "1",
                           "--connections", "8", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads(out.with_suffix(".json").read_text())["results"]
    assert list(runs) == ["hyperserve --workers 1, 8 connections", "hyperserve --workers 1, 16 connections",
                          "hyperserve --workers 2, 16 connections"]
    for (row,) in runs.values():
        assert row["requests_per_s"] > 0 and row["non_2xx"] == 0
        assert row["server_cpu_us_per_request"] > 0 and row["wrk_cpu_us_per_request"] > 0
    assert "two workers can reach at most" in out.with_suffix(".md").read_text()


def test_predict_inprocess_smoke():
    """The in-process predict driver runs the real path to the end: every answer a 200, batches formed."""
    proc = subprocess.run([sys.executable, "-m", "hyperserve.bench.predict_inprocess", "-n", "400", "-c", "8"],
                          capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "400 requests over 8 connections" in proc.stdout and "{8: " in proc.stdout


def test_wrk_median_round_and_ratio():
    """The table's row is the median round; its ratio is the median of same-round ratios."""
    from hyperserve.bench.wrk_compare import median_ratio, median_round

    rounds = [{"requests_per_s": v} for v in (30.0, 10.0, 20.0)]
    reference = [{"requests_per_s": v} for v in (10.0, 10.0, 5.0)]  # same-round ratios 3, 1, 4
    assert median_round(rounds)["requests_per_s"] == 20.0
    assert median_round(rounds[:2])["requests_per_s"] == 10.0  # the lower middle of an even count
    assert median_round([{"cpu": 3.0}, {"cpu": 1.0}, {"cpu": 2.0}], "cpu")["cpu"] == 2.0
    assert median_ratio(rounds, reference) == 3.0
    assert median_ratio(rounds[:2], reference[:2]) == 2.0


def test_batch_compare_splits_the_cpus_and_tables_each_round_against_its_own_in_process_job():
    """The rows with the model on the same cores: MODEL:CLIENT CPUs, and each endpoint job's ratio
    is the median of its rounds' ratios to the in-process job pinned to the same CPUs."""
    from hyperserve.bench.batch_compare import markdown, split_cpus

    assert split_cpus("0-3:4-7") == ("0-3", "4-7")
    with pytest.raises(SystemExit, match="MODEL:CLIENT"):
        split_cpus("0")
    cpus = sorted(os.sched_getaffinity(0))
    default = split_cpus("")
    if len(cpus) < 2:
        assert default is None
    else:
        model, client = (set(map(int, part.split(","))) for part in default)
        assert model and client and not model & client and model | client == set(cpus)
    doc = {"meta": {"date": "2026-12-07", "cpu": "cpu", "cores": 2, "rounds": 3, "rows": 10,
                    "model_cpus": "0", "client_cpus": "1"},
           "iris": {},
           "iris_split": {"in process on CPUs 0": [{"rows_per_s": r} for r in (100.0, 200.0, 100.0)],
                          "endpoint → hyperserve on CPUs 0": [
                              {"rows_per_s": r, "server_cpu_ns_per_row": 500} for r in (90.0, 60.0, 30.0)]},
           "ray_w2": {}}
    table = markdown(doc)
    # same-round ratios 0.9, 0.3 and 0.3: the median is 30% (the median rates would give 60%)
    assert "| endpoint → hyperserve on CPUs 0 | 60 | 30% | 500 |" in table
    assert "| in process on CPUs 0 | 100 | 100% |  |" in table
