"""GET /metrics over real sockets: what one worker counts, what two workers add up to (one of them
killed and replaced on the way), --metrics-port and --metrics false."""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROW = [6.7, 3.0, 5.2, 2.3]


def scrape(url: str) -> dict[str, list]:
    """name → [(labels, value)] of every sample, as Prometheus reads the page."""
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name: str, **labels) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))


def test_one_worker_counts_answers_rows_batches_and_latencies(start_server, sklearn_dir):
    server = start_server([sklearn_dir])
    for _ in range(5):
        assert httpx.post(server.url + "/predict", json={"instances": [ROW, ROW]}).status_code == 200
    assert httpx.post(server.url + "/v1/models/model:predict", json={"instances": [ROW]}).status_code == 200
    assert httpx.post(server.url + "/predict", json={"instances": [[1, 2]]}).status_code == 400
    assert httpx.post(server.url + "/v2/models/model/infer", json={"inputs": []}).status_code == 400
    assert httpx.post(server.url + "/v2/models/nope/infer", json={"inputs": []}).status_code == 404
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.env['HYPERSERVE_GRPC_PORT']}")
    tensor = grpcclient.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    client.infer("model", [tensor])
    with pytest.raises(InferenceServerException):
        client.infer("nope", [tensor])
    samples = scrape(server.url)
    model = {"model": "model", "version": "1"}
    assert value(samples, "hyperserve_requests_total", profile="vertex", status_class="2xx", **model) == 5
    assert value(samples, "hyperserve_requests_total", profile="kserve-v1", status_class="2xx", **model) == 1
    assert value(samples, "hyperserve_request_failures_total", profile="vertex", reason="bad_input", **model) == 1
    assert value(samples, "hyperserve_request_failures_total", profile="v2", reason="bad_input", **model) == 1
    assert value(samples, "hyperserve_request_failures_total", profile="v2", reason="bad_input", model="") == 1
    assert value(samples, "hyperserve_requests_total", profile="grpc", status_class="2xx", **model) == 1
    assert value(samples, "hyperserve_request_failures_total", profile="grpc", reason="bad_input", model="") == 1
    assert value(samples, "hyperserve_request_duration_seconds_count", profile="vertex", **model) == 6
    assert value(samples, "hyperserve_request_duration_seconds_bucket", profile="vertex", le="+Inf", **model) == 6
    assert value(samples, "hyperserve_request_duration_seconds_sum", profile="vertex", **model) > 0
    # Rows and calls: 5 × 2 rows, 1 row and 1 over gRPC ran (one at a time, as the client sent them).
    assert value(samples, "hyperserve_inferences_total", **model) == 12
    assert value(samples, "hyperserve_executions_total", **model) == 7
    assert value(samples, "hyperserve_queue_duration_seconds_count", **model) == 7
    assert value(samples, "hyperserve_compute_duration_seconds_count", **model) == 7
    assert value(samples, "hyperserve_batch_size_bucket", le="1.0", **model) == 2
    assert value(samples, "hyperserve_batch_size_bucket", le="2.0", **model) == 7
    assert value(samples, "hyperserve_batch_size_sum", **model) == 12
    assert value(samples, "hyperserve_model_ready", **model) == 1
    assert value(samples, "hyperserve_model_load_seconds", **model) > 0
    assert value(samples, "hyperserve_queue_length", **model) == 0
    assert value(samples, "hyperserve_calls_in_flight", **model) == 0
    assert value(samples, "hyperserve_workers") == 1
    assert value(samples, "hyperserve_process_resident_memory_bytes") > 10_000_000
    assert value(samples, "hyperserve_process_cpu_seconds_total") > 0
    assert value(samples, "hyperserve_open_connections") >= 1
    # Health and metrics answers are not a model's.
    assert value(samples, "hyperserve_requests_total", model="", profile="vertex", status_class="2xx") >= 1


def _total_predictions(url: str) -> float:
    return value(scrape(url), "hyperserve_requests_total", profile="vertex", status_class="2xx", model="model")


def _wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_two_workers_add_up_and_counters_survive_a_replaced_worker(start_server, sklearn_dir):
    server = start_server([sklearn_dir, "--workers", "2"], env={"HYPERSERVE_WORKERS": "2"})
    pids = set()
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        r = httpx.post(server.url + "/predict", json={"instances": [ROW]}, headers={"connection": "close"})
        assert r.status_code == 200
    for _ in range(20):
        pids.add(httpx.get(server.url + "/v1/models/model/stats", headers={"connection": "close"}).json()["worker_pid"])
    assert len(pids) == 2
    # Each worker writes its numbers about once a second; any worker's scrape shows them all.
    assert _wait_for(lambda: _total_predictions(server.url) == 40), scrape(server.url)
    assert value(scrape(server.url), "hyperserve_workers") == 2
    time.sleep(1.5)  # past a flush of every worker: what it counted is on disk
    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    # Replaced: the new worker starts at zero, the dead one's counters stay in the totals.
    assert _wait_for(lambda: httpx.get(server.url + "/health").status_code == 200 and value(
        scrape(server.url), "hyperserve_workers") == 2, timeout=30)
    for _ in range(10):
        assert httpx.post(server.url + "/predict", json={"instances": [ROW]},
                          headers={"connection": "close"}).status_code == 200
    assert _wait_for(lambda: _total_predictions(server.url) == 50), scrape(server.url)
    samples = scrape(server.url)
    assert value(samples, "hyperserve_inferences_total", model="model") == 50
    assert value(samples, "hyperserve_model_ready", model="model") == 1


def test_metrics_port_and_metrics_off(start_server, sklearn_dir):
    metrics_port = free_port()
    server = start_server([sklearn_dir, "--metrics-port", metrics_port])
    assert httpx.post(server.url + "/predict", json={"instances": [ROW]}).status_code == 200
    samples = scrape(f"http://127.0.0.1:{metrics_port}")
    assert value(samples, "hyperserve_requests_total", model="model", status_class="2xx") == 1
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/predict").status_code == 404  # /metrics alone there
    off = start_server([sklearn_dir, "--metrics", "false"])
    assert httpx.get(off.url + "/metrics").status_code == 404
