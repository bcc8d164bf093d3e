"""``hyperserve batch`` end to end: the command line on real files, in process, against a running
server and a flaky one, on gs:// through the storage emulator, and resumed after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from hyperserve.server.batch.records import write_tfrecord
from hyperserve.server.http import Request, Response
from tests.conftest import ROOT
from tests.helpers.http_stub import ServerThread

pytestmark = pytest.mark.e2e


def batch(*args, env=None, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hyperserve.server", "batch", *map(str, args)],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, capture_output=True,
                          timeout=timeout, cwd=str(ROOT))
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}:\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc


def results(out: Path) -> list[dict]:
    shards = sorted(out.glob("prediction.results-*"))
    return [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]


def summary_of(proc) -> dict:
    return json.loads(proc.stdout)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(list(map(float, r))) + "\n" for r in rows))
    return path


def test_jsonl_in_process_every_row_in_order_with_summary(tmp_path, sklearn_dir, iris_rows, expected):
    source = write_jsonl(tmp_path / "in.jsonl", iris_rows)
    out = tmp_path / "out"
    proc = batch(sklearn_dir, "--input", source, "--format", "jsonl", "--output", out, "--rows-per-shard", 1000)
    lines = results(out)
    assert [line["prediction"] for line in lines] == expected
    assert [line["instance"] for line in lines] == iris_rows.tolist()
    assert sorted(p.name for p in out.iterdir()) == [
        "job.json", "job_summary.json", *[f"prediction.errors_stats-0000{i}-of-00003" for i in range(3)],
        *[f"prediction.results-0000{i}-of-00003" for i in range(3)]]
    summary = summary_of(proc)
    assert summary == json.loads((out / "job_summary.json").read_text())
    assert (summary["instances"], summary["predictions"], summary["errors"], summary["shards"]) == (3000, 3000, 0, 3)
    assert summary["rows_per_s"] > 0 and summary["engine"] == "in-process"
    assert "shard 3/3 written" in proc.stderr.decode()  # a log line per shard off a terminal


def test_worker_processes_fork_from_the_one_load_of_a_fork_safe_model(tmp_path, iris, iris_rows):
    import joblib

    from tests.helpers.sklearn_models import ProcessNotingClassifier

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    joblib.dump(ProcessNotingClassifier(max_iter=1000).fit(*iris), model_dir / "model.joblib")
    log = tmp_path / "processes.log"
    out = tmp_path / "out"
    proc = batch(model_dir, "--input", write_jsonl(tmp_path / "in.jsonl", iris_rows), "--format", "jsonl",
                 "--output", out, "--rows-per-shard", 100, "--workers", 2,
                 env={"HYPERSERVE_TEST_PROCESS_LOG": str(log)})
    events = [line.split() for line in log.read_text().splitlines()]
    loads = [pid for event, pid in events if event == "load"]
    predicting = {pid for event, pid in events if event == "predict"}
    assert len(loads) == 1  # the job's own process, before the fork: not once per worker
    assert predicting and loads[0] not in predicting  # the forked workers predicted
    assert [line["instance"] for line in results(out)] == iris_rows.tolist()
    assert summary_of(proc)["predictions"] == len(iris_rows) and summary_of(proc)["shards"] == 30


def test_bad_rows_fail_alone_with_counts_and_the_error_ratio_decides_the_exit(tmp_path, sklearn_dir):
    source = tmp_path / "in.jsonl"
    # Two values on one line would be two instances: the line fails, its neighbours do not.
    source.write_text('[5.1, 3.5, 1.4, 0.2]\n[1, 2]\n\n"text"\n[6.7, 3.0, 5.2, 2.3]\n[1,2,3,4]]\n'
                      '[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2]\n[4.9, 3.0, 1.4, 0.2]\n')
    out = tmp_path / "out"
    proc = batch(sklearn_dir, "--input", source, "--format", "jsonl", "--output", out, "--max-error-ratio", 0.9)
    lines = results(out)
    assert [("prediction" in line, line.get("error", {}).get("code")) for line in lines] == \
        [(True, None), (False, 400), (False, 400), (True, None), (False, 400), (False, 400), (True, None)]
    assert lines[1]["instance"] == [1, 2] and "shape [4]" in lines[1]["error"]["message"]
    assert lines[4]["instance"] == "[1,2,3,4]]"
    assert lines[5]["instance"] == "[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2]"
    assert "decodes to 2 instances, not one per line" in lines[5]["error"]["message"]
    stats = [json.loads(line) for line in (out / "prediction.errors_stats-00000-of-00001").read_text().splitlines()]
    assert sum(s["count"] for s in stats) == 4 and all(set(s) == {"code", "message", "count"} for s in stats)
    assert summary_of(proc)["errors"] == 4
    # The same job with the default ratio (0.1) exits 1, after writing everything; a re-run resumes it.
    failed = batch(sklearn_dir, "--input", source, "--format", "jsonl", "--output", tmp_path / "strict", check=False)
    assert failed.returncode == 1 and "more than --max-error-ratio" in failed.stderr.decode()
    assert len(results(tmp_path / "strict")) == 7


def test_csv_with_instance_config_and_key_field(tmp_path, sklearn_dir, iris_rows, expected):
    source = tmp_path / "in.csv"
    source.write_text('id,a,b,c,d,note\n' + "".join(f'"r{i}",{a},{b},{c},{d},"x"\n'
                                                   for i, (a, b, c, d) in enumerate(iris_rows[:50])))
    out = tmp_path / "out"
    batch(sklearn_dir, "--input", source, "--format", "csv", "--output", out,
          "--instance-config", '{"keyField": "id", "includedFields": ["a", "b", "c", "d"]}')
    lines = results(out)
    assert lines == [{"key": f"r{i}", "prediction": p} for i, p in enumerate(expected[:50])]


def test_several_inputs_with_wildcards_and_a_torchserve_archive_gets_data_wrapped(tmp_path, torchserve_archives,
                                                                                  iris_rows, expected):
    write_jsonl(tmp_path / "part-1.jsonl", iris_rows[:10])
    write_jsonl(tmp_path / "part-2.jsonl", iris_rows[10:25])
    (tmp_path / "rows.csv").write_text("a,b,c,d\n" + "".join(",".join(map(str, r)) + "\n" for r in iris_rows[25:30]))
    out = tmp_path / "out"
    proc = batch(torchserve_archives["sklearn"], "--input", f"{tmp_path}/part-*.jsonl", "--format", "jsonl",
                 "--output", out, "--batch-size", 4)
    lines = results(out)
    # Vertex's PyTorch images take {"data": <instance>}; the handler reads row["data"].
    assert [line["instance"] for line in lines] == [{"data": r} for r in iris_rows[:25].tolist()]
    assert [line["prediction"] for line in lines] == expected[:25]
    assert summary_of(proc)["shards"] == 2  # one per input file
    batch(torchserve_archives["sklearn"], "--input", tmp_path / "rows.csv", "--format", "csv",
          "--output", tmp_path / "csv-out")
    assert [line["prediction"] for line in results(tmp_path / "csv-out")] == expected[25:30]


def test_tfrecords_and_file_lists_send_b64(tmp_path, torchserve_archives):
    # The plain handler reverses bytes it is given: {"data": {"b64"}} reaches it as bytes.
    payloads = [b"abc", b"hello world", bytes(range(10))]
    with open(tmp_path / "in.tfrecord", "wb") as f:
        for payload in payloads:
            write_tfrecord(f, payload)
    import gzip

    (tmp_path / "in.tfrecord.gz").write_bytes(gzip.compress((tmp_path / "in.tfrecord").read_bytes()))
    for fmt, name in (("tf-record", "in.tfrecord"), ("tf-record-gzip", "in.tfrecord.gz")):
        out = tmp_path / fmt
        batch(torchserve_archives["plain"], "--input", tmp_path / name, "--format", fmt, "--output", out)
        lines = results(out)
        import base64

        assert [base64.b64decode(line["instance"]["data"]["b64"]) for line in lines] == payloads
        assert [line["prediction"] for line in lines[:2]] == ["cba", "dlrow olleh"]
    for i, payload in enumerate(payloads):
        (tmp_path / f"f{i}.bin").write_bytes(payload)
    (tmp_path / "list.txt").write_text("".join(f"{tmp_path}/f{i}.bin\n" for i in range(3)) + f"{tmp_path}/gone\n")
    out = tmp_path / "listed"
    batch(torchserve_archives["plain"], "--input", tmp_path / "list.txt", "--format", "file-list", "--output", out,
          "--max-error-ratio", 0.5)
    lines = results(out)
    assert [line["instance"] for line in lines] == [f"{tmp_path}/f{i}.bin" for i in range(3)] + [f"{tmp_path}/gone"]
    assert lines[0]["prediction"] == "cba" and "cannot read" in lines[3]["error"]["message"]


def test_a_corrupt_tfrecord_fails_the_job_naming_file_and_offset(tmp_path, sklearn_dir):
    with open(tmp_path / "in.tfrecord", "wb") as f:
        write_tfrecord(f, b"[1.0, 2.0, 3.0, 4.0]")
        write_tfrecord(f, b"[1.0, 2.0, 3.0, 4.0]")
    data = bytearray((tmp_path / "in.tfrecord").read_bytes())
    data[-6] ^= 0xFF
    (tmp_path / "in.tfrecord").write_bytes(bytes(data))
    proc = batch(sklearn_dir, "--input", tmp_path / "in.tfrecord", "--format", "tf-record", "--output",
                 tmp_path / "out", check=False)
    assert proc.returncode == 1
    assert f"corrupt TFRecord file {tmp_path}/in.tfrecord: the record at byte 36 fails its CRC-32C check" \
        in proc.stderr.decode()
    assert not list((tmp_path / "out").glob("prediction.results-*"))  # no partial shard


@pytest.mark.parametrize("args,message", [
    (["--format", "bigquery"], "export the table to JSON lines"),
    (["--format", "jsonl", "--input", "/nonexistent/*.jsonl"], "no input file matches /nonexistent/*.jsonl"),
    (["--format", "jsonl", "--included-fields", "a", "--excluded-fields", "b"], "cannot both be set"),
])
def test_job_level_errors_exit_1_with_a_clear_message(tmp_path, sklearn_dir, args, message):
    source = write_jsonl(tmp_path / "in.jsonl", [[1, 2, 3, 4]])
    proc = batch(sklearn_dir, "--input", source, "--output", tmp_path / "out", *args, check=False)
    assert proc.returncode == 1 and message in proc.stderr.decode()


def test_no_model_fails_the_job(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [[1, 2, 3, 4]])
    proc = batch(tmp_path / "missing-model", "--input", source, "--format", "jsonl", "--output", tmp_path / "o",
                 check=False)
    assert proc.returncode == 1 and "the model did not load" in proc.stderr.decode()


def test_another_jobs_output_prefix_is_refused(tmp_path, sklearn_dir):
    first = write_jsonl(tmp_path / "a.jsonl", [[1, 2, 3, 4]])
    second = write_jsonl(tmp_path / "b.jsonl", [[1, 2, 3, 4]])
    batch(sklearn_dir, "--input", first, "--format", "jsonl", "--output", tmp_path / "out")
    proc = batch(sklearn_dir, "--input", second, "--format", "jsonl", "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "belongs to another job (it differs in inputs)" in proc.stderr.decode()


def start_job(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperserve.server", "batch", *map(str, args)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(ROOT))


def kill_after_shards(proc: subprocess.Popen, out: Path, shards: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("prediction.results-*"))) < shards:
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no shard was committed in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def check_resumed(out: Path, rows, total_shards: int) -> None:
    lines = results(out)
    assert len(lines) == len(rows)  # nothing lost, nothing twice
    assert [line["instance"] for line in lines] == rows.tolist()
    assert len(list(out.glob("prediction.results-*"))) == total_shards
    assert not list(out.glob(".prediction.*"))  # the killed run's unfinished shard is gone


def test_resume_after_sigkill_skips_committed_shards_and_loses_nothing(tmp_path, sklearn_dir, iris):
    rows = np.tile(iris[0], (200, 1))[:30000]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    # Slow on purpose (one small request at a time), so that the kill lands mid-job.
    slow = ("--rows-per-shard", 1000, "--concurrency", 1, "--batch-size", 8, "--max-batch-size", 8)
    job = start_job(sklearn_dir, "--input", source, "--format", "jsonl", "--output", out, *slow)
    kill_after_shards(job, out, 3)
    done = len(list(out.glob("prediction.results-*")))
    assert done < 30
    proc = batch(sklearn_dir, "--input", source, "--format", "jsonl", "--output", out, *slow)
    summary = summary_of(proc)
    assert summary["shards_skipped"] >= done and summary["instances"] == 30000
    check_resumed(out, rows, 30)


# -- against an endpoint ---------------------------------------------------------------------

def test_endpoint_against_a_running_hyperserve_gives_the_in_process_output(tmp_path, start_server, sklearn_dir,
                                                                           iris_rows):
    server = start_server([sklearn_dir])
    source = write_jsonl(tmp_path / "in.jsonl", iris_rows)
    batch(sklearn_dir, "--input", source, "--format", "jsonl", "--output", tmp_path / "local")
    proc = batch("--input", source, "--format", "jsonl", "--output", tmp_path / "remote",
                 "--endpoint", server.url + "/predict")
    assert results(tmp_path / "remote") == results(tmp_path / "local")
    assert summary_of(proc)["engine"] == "endpoint"
    # The server's defaults merge the job's requests of 64 for scikit-learn (up to 4096 instances a
    # call): its calls cost mostly a fixed overhead, so one call a request would waste most of it.
    calls = httpx.get(server.url + "/v1/models/model/stats").json()["batch_sizes"]
    assert max(map(int, calls)) > 64, calls


@pytest.mark.parametrize("client", [["least_client.py", "8"], ["raw_client.py", "8"], ["raw_client.py", "3", "4"]],
                         ids=["least", "raw", "raw-pipelined"])
def test_the_bench_lean_clients_write_what_the_endpoint_job_writes(tmp_path, start_server, sklearn_dir, iris_rows,
                                                                    client):
    """bench/peers/least_client.py and raw_client.py bound what a leaner --endpoint client could
    give: they must do the job's work (same lines, same order), or their rows/s bound nothing."""
    server = start_server([sklearn_dir])
    source = write_jsonl(tmp_path / "in.jsonl", iris_rows)
    batch("--input", source, "--format", "jsonl", "--output", tmp_path / "job", "--endpoint", server.url + "/predict")
    script, *flight = client
    lean = [sys.executable, str(ROOT / "bench" / "peers" / script)]
    run = subprocess.run([*lean, server.url + "/predict", str(source), str(tmp_path / "lean.jsonl"), *flight],
                         capture_output=True, text=True, timeout=120, cwd=str(ROOT), check=True)
    assert orjson.loads(run.stdout)["instances"] == len(iris_rows)
    lines = [orjson.loads(line) for line in (tmp_path / "lean.jsonl").read_bytes().splitlines()]
    assert lines == results(tmp_path / "job")
    refused = subprocess.run([*lean, server.url + "/no-such-route", str(source), str(tmp_path / "x.jsonl")],
                             capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert refused.returncode != 0 and "404" in refused.stderr
    # A 200 whose predictions do not fit its instances stops the client with the reason, not a hang.
    short = ServerThread(lambda request: Response.json({"predictions": [0]}))
    try:
        misfit = subprocess.run([*lean, short.url + "/predict", str(source), str(tmp_path / "y.jsonl"), *flight],
                                capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    finally:
        short.stop()
    assert misfit.returncode != 0 and "1 predictions for 64 instances" in misfit.stderr, misfit.stderr


def test_the_raw_client_pipelines_no_deeper_than_hyperserve_reads(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [[1, 2]])
    deep = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "raw_client.py"), "http://127.0.0.1:9/p",
                           str(source), str(tmp_path / "out.jsonl"), "2", "33"],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert deep.returncode != 0 and "DEPTH must be 1 to 32, got 33" in deep.stderr


class Flaky:
    """A predict route that answers 503 to its first calls, then sums each instance; an instance
    of [-1] makes the whole request a 400, as a model refusing one row would."""

    def __init__(self, failures: int, retry_after: str = "0"):
        self.failures = failures
        self.retry_after = retry_after
        self.calls = 0
        self.times: list[float] = []
        self.sizes: list[int] = []

    def __call__(self, request: Request):
        self.calls += 1
        self.times.append(time.monotonic())
        if self.calls <= self.failures:
            return Response.error(503, "warming up", {"retry-after": self.retry_after})
        instances = orjson.loads(request.body)["instances"]
        assert "parameters" not in orjson.loads(request.body)
        self.sizes.append(len(instances))
        if [-1] in instances:
            return Response.error(400, "instance [-1] is not allowed")
        return Response.json({"predictions": [sum(i) for i in instances]})


def test_endpoint_retries_503_then_isolates_rows_a_400_refuses(tmp_path):
    flaky = Flaky(failures=3)
    server = ServerThread(flaky)
    try:
        source = tmp_path / "in.jsonl"
        source.write_text("".join(f"[{i}, 1]\n" for i in range(10)) + "[-1]\n" + "[5, 5]\n")
        proc = batch("--input", source, "--format", "jsonl", "--output", tmp_path / "out", "--endpoint",
                     server.url + "/predict", "--batch-size", 4, "--concurrency", 1, "--max-error-ratio", 0.5)
    finally:
        server.stop()
    lines = results(tmp_path / "out")
    assert [line.get("prediction") for line in lines] == [i + 1 for i in range(10)] + [None, 10]
    assert lines[10] == {"instance": [-1], "error": {"code": 400, "message": "instance [-1] is not allowed"}}
    # 3 refused calls, 3 batches, then the failed batch's rows one by one.
    assert flaky.calls == 3 + 3 + 4 and flaky.sizes[:3] == [4, 4, 4] and flaky.sizes[3:] == [1, 1, 1, 1]
    assert summary_of(proc)["errors"] == 1


def test_endpoint_waits_as_long_as_a_503s_retry_after_asks(tmp_path):
    """The first retry's backoff alone is 0.25-0.5 s; the server asked for 2."""
    flaky = Flaky(failures=1, retry_after="2")
    server = ServerThread(flaky)
    try:
        source = write_jsonl(tmp_path / "in.jsonl", [[1, 2]])
        proc = batch("--input", source, "--format", "jsonl", "--output", tmp_path / "out", "--endpoint",
                     server.url + "/predict")
    finally:
        server.stop()
    assert flaky.calls == 2 and flaky.times[1] - flaky.times[0] >= 2.0
    assert results(tmp_path / "out") == [{"instance": [1, 2], "prediction": 3}]
    assert summary_of(proc)["errors"] == 0


def test_retry_after_is_honoured_up_to_the_longest_backoff():
    from hyperserve.server.batch.predictors import Endpoint, RequestFailed

    endpoint = Endpoint("http://127.0.0.1:1/predict", concurrency=1, retries=3, backoff_s=0.5, max_backoff_s=30)
    assert 0.25 <= endpoint._delay(0, RequestFailed(503, "busy")) <= 0.5
    assert endpoint._delay(0, RequestFailed(503, "busy", retry_after_s=10)) == 10
    assert endpoint._delay(0, RequestFailed(429, "slow down", retry_after_s=86400)) == 30
    assert 0.25 <= endpoint._delay(0, RequestFailed(503, "busy", retry_after_s=0)) <= 0.5


def test_an_endpoint_that_never_answers_fails_the_job(tmp_path):
    from tests.conftest import free_port

    source = write_jsonl(tmp_path / "in.jsonl", [[1, 2, 3, 4]])
    proc = batch("--input", source, "--format", "jsonl", "--output", tmp_path / "out", "--endpoint",
                 f"http://127.0.0.1:{free_port()}/predict", "--max-retries", 2, check=False)
    assert proc.returncode == 1 and "did not answer after 3 attempts" in proc.stderr.decode()


# -- gs:// -----------------------------------------------------------------------------------

def test_gs_inputs_with_a_wildcard_and_gs_output(tmp_path, gcs_emulator, sklearn_dir, iris_rows, expected):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tests.helpers.gcs import upload

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", iris_rows[:100])
    write_jsonl(data / "b.jsonl", iris_rows[100:150])
    (data / "skip.txt").write_text("not an input\n")
    upload(gcs_emulator, "batch", "inputs", data)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator}
    args = (sklearn_dir, "--input", "gs://batch/inputs/*.jsonl", "--format", "jsonl", "--output",
            "gs://batch/results/job1", "--rows-per-shard", 60, "--cache-dir", tmp_path / "cache")
    proc = batch(*args, env=env)
    assert summary_of(proc)["shards"] == 3  # 60 + 40 from a.jsonl, 50 from b.jsonl
    client = storage.Client(credentials=AnonymousCredentials(), project="test",
                            client_options={"api_endpoint": gcs_emulator})
    names = sorted(b.name for b in client.list_blobs("batch", prefix="results/job1/"))
    assert names == ["results/job1/job.json", "results/job1/job_summary.json",
                     *[f"results/job1/prediction.errors_stats-0000{i}-of-00003" for i in range(3)],
                     *[f"results/job1/prediction.results-0000{i}-of-00003" for i in range(3)]]
    lines = [json.loads(line) for name in names if "results-" in name
             for line in client.bucket("batch").blob(name).download_as_text().splitlines()]
    assert [line["prediction"] for line in lines] == expected[:150]
    again = summary_of(batch(*args, env=env))  # everything committed: a re-run writes nothing
    assert again["shards_skipped"] == 3 and again["instances"] == 150


# -- Ray -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster (`ray start --head`), as a user would run one, stopped afterwards."""
    pytest.importorskip("ray.data", reason="needs Ray Data (pip install 'hyperserve[ray]')")
    from tests.conftest import free_port

    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    temp = Path(f"/tmp/ray-hs-{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    started = subprocess.run([ray, "start", "--head", "--port", str(port), "--num-cpus", "2", "--temp-dir", str(temp),
                              "--disable-usage-stats", "--include-dashboard", "false"],
                             capture_output=True, timeout=180)
    assert started.returncode == 0, started.stderr.decode()
    yield f"127.0.0.1:{port}"
    subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


def test_ray_engine_writes_what_the_local_engine_writes(tmp_path, ray_cluster, sklearn_dir, iris_rows):
    source = write_jsonl(tmp_path / "in.jsonl", iris_rows)
    args = (sklearn_dir, "--input", source, "--format", "jsonl", "--rows-per-shard", 700)
    batch(*args, "--output", tmp_path / "local")
    proc = batch(*args, "--output", tmp_path / "ray", "--engine", "ray", "--ray-address", ray_cluster)
    summary = summary_of(proc)
    assert (summary["engine"], summary["shards"], summary["instances"]) == ("ray", 5, 3000)
    for name in sorted(p.name for p in (tmp_path / "local").glob("prediction.*")):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_ray_engine_resumes_after_sigkill(tmp_path, ray_cluster, sklearn_dir, iris):
    rows = np.tile(iris[0], (100, 1))[:12000]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    args = (sklearn_dir, "--input", source, "--format", "jsonl", "--output", out, "--engine", "ray", "--ray-address",
            ray_cluster, "--rows-per-shard", 500, "--concurrency", 1, "--batch-size", 4, "--max-batch-size", 4)
    kill_after_shards(start_job(*args), out, 2, timeout=240)
    done = len(list(out.glob("prediction.results-*")))
    assert done < 24
    time.sleep(2)  # the killed driver's actors end with it
    summary = summary_of(batch(*args))
    assert summary["shards_skipped"] >= done and summary["instances"] == 12000
    check_resumed(out, rows, 24)


# -- Azure ML batch endpoint jobs --------------------------------------------------------------

MINI_BATCH_SCRIPT = '''
import os
from pathlib import Path

import pandas as pd

offset = None


def init():
    global offset
    offset = float((Path(os.environ["AZUREML_MODEL_DIR"]) / "offset.txt").read_text())


def run(mini_batch):
    if any(Path(p).read_text().strip() == "boom" for p in mini_batch):
        with open(os.environ["ATTEMPTS_FILE"], "a") as f:
            f.write("attempt\\n")
        raise ValueError("this mini-batch holds a bad file")
    rows = [(Path(p).name, sum(float(v) for v in Path(p).read_text().split()) + offset) for p in mini_batch]
    if os.environ.get("AS_FRAME"):
        return pd.DataFrame(rows, columns=["file", "total"])
    return [f"{name} {total}" for name, total in rows]
'''


@pytest.fixture
def mini_batch_job(tmp_path):
    app, model, data = tmp_path / "app", tmp_path / "model", tmp_path / "data"
    for d in (app, model, data):
        d.mkdir()
    (app / "batch_score.py").write_text(MINI_BATCH_SCRIPT)
    (model / "offset.txt").write_text("100")
    for i in range(7):
        (data / f"f{i}.txt").write_text("boom" if i == 4 else f"{i} {i}")
    env = {"AML_APP_ROOT": str(app), "ATTEMPTS_FILE": str(tmp_path / "attempts")}
    return model, data, env, tmp_path


def test_a_scoring_scripts_batch_form_appends_rows_and_retries_a_failing_mini_batch(mini_batch_job):
    model, data, env, tmp = mini_batch_job
    proc = batch(model, "--entry-script", "batch_score.py", "--input", data, "--output", tmp / "out",
                 "--mini-batch-size", 2, "--workers", 2, env=env)
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["files"] == 7 and summary["mini_batches"] == 4 and summary["failed_files"] == 2
    # f4 fails its mini-batch (f4, f5): run() is tried once and retried 3 times, as Azure does
    assert (tmp / "attempts").read_text().count("attempt") == 4
    lines = (tmp / "out" / "predictions.csv").read_text().splitlines()
    assert lines == [f"f{i}.txt {2 * i + 100.0}" for i in (0, 1, 2, 3, 6)]  # headerless, in input order
    failures = json.loads((tmp / "out" / "job_summary.json").read_text())["failures"]
    assert [Path(f["file"]).name for f in failures] == ["f4.txt", "f5.txt"]
    assert "this mini-batch holds a bad file" in failures[0]["error"]


def test_the_error_threshold_stops_a_job_and_a_dataframe_becomes_csv_rows(mini_batch_job):
    model, data, env, tmp = mini_batch_job
    stopped = batch(model, "--entry-script", "batch_score.py", "--input", data, "--output", tmp / "stopped",
                    "--mini-batch-size", 2, "--error-threshold", 1, "--mini-batch-retries", 0, env=env, check=False)
    assert stopped.returncode == 1 and "more than --error-threshold 1" in stopped.stderr.decode()
    (data / "f4.txt").write_text("4 4")
    batch(model, "--entry-script", "batch_score.py", "--input", data, "--output", tmp / "frame",
          "--output-file-name", "scores.csv", env={**env, "AS_FRAME": "1"})
    assert (tmp / "frame" / "scores.csv").read_text().splitlines() == [f"f{i}.txt,{2 * i + 100.0}" for i in range(7)]


def test_a_scoring_scripts_batch_form_on_ray(mini_batch_job, ray_cluster):
    model, data, env, tmp = mini_batch_job
    (data / "f4.txt").write_text("4 4")
    batch(model, "--entry-script", "batch_score.py", "--input", data, "--output", tmp / "ray", "--mini-batch-size", 3,
          "--engine", "ray", "--ray-address", ray_cluster, env=env)
    assert (tmp / "ray" / "predictions.csv").read_text().splitlines() == [f"f{i}.txt {2 * i + 100.0}" for i in range(7)]


def test_an_mlflow_model_on_a_batch_endpoint(tmp_path):
    """No script: CSV files become DataFrames (typed by the signature); rows are row, prediction, file_name."""
    import pickle

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 0.1, 1.0, 0.9], "b": [1.0, 0.9, 0.0, 0.1]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    model_dir, data = tmp_path / "model", tmp_path / "data"
    model_dir.mkdir()
    data.mkdir()
    (model_dir / "model.pkl").write_bytes(pickle.dumps(model))
    inputs = json.dumps([{"type": "double", "name": "a"}, {"type": "double", "name": "b"}]).replace('"', '\\"')
    (model_dir / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n"
        f'signature:\n  inputs: "{inputs}"\n')
    pd.DataFrame({"b": [1.0, 0.0], "a": [0.0, 1.0]}).to_csv(data / "one.csv", index=False)
    pd.DataFrame({"a": [1, 0, 1], "b": [0, 1, 0]}).to_csv(data / "two.csv", index=False)
    (data / "notes.txt").write_text("not data")
    proc = batch(model_dir, "--input", data, "--output", tmp_path / "out", "--mini-batch-size", 2,
                 "--trust-model-code")
    assert json.loads(proc.stdout.decode().strip().splitlines()[-1])["failed_files"] == 1  # notes.txt
    assert (tmp_path / "out" / "predictions.csv").read_text().splitlines() == \
        ["0,0,one.csv", "1,1,one.csv", "0,1,two.csv", "1,0,two.csv", "2,1,two.csv"]


def test_images_become_arrays_for_an_mlflow_onnx_model(tmp_path):
    """An image file is one array (height, width) given to the model as a batch of one."""
    import onnx
    from onnx import TensorProto, helper
    from PIL import Image

    model_dir, data = tmp_path / "model", tmp_path / "data"
    model_dir.mkdir()
    data.mkdir()
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["image", "axes"], ["total"], keepdims=0)], "sum",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 2, 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model_dir / "model.onnx"))
    (model_dir / "MLmodel").write_text("flavors:\n  onnx:\n    data: model.onnx\n")
    Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3), mode="L").save(data / "a.png")
    Image.fromarray(np.full((2, 3), 10, dtype=np.uint8), mode="L").save(data / "b.png")
    batch(model_dir, "--input", data, "--output", tmp_path / "out", "--mini-batch-size", 5)
    assert (tmp_path / "out" / "predictions.csv").read_text().splitlines() == ["0,15.0,a.png", "0,60.0,b.png"]
