"""The pure parts of operations: metrics' histograms and the merge of workers' snapshots, trace
headers, access tokens, store URIs and the verified download."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from hyperserve.server.access import AccessTokens, Guard, presented
from hyperserve.server.errors import ServingError
from hyperserve.server.logs import trace_of
from hyperserve.server.metrics import snapshot
from hyperserve.server.metrics.exposition import render
from hyperserve.server.metrics.histogram import SECONDS_BOUNDS, Histogram
from hyperserve.server.metrics.recorder import failure_reason
from hyperserve.server.metrics.service import WorkerMetrics
from hyperserve.server.repository import download
from hyperserve.server.repository.stores import StorageError, StoredObject, split


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), max_size=200))
def test_histogram_counts_every_observation_in_its_bucket(values):
    histogram = Histogram()
    for value in values:
        histogram.observe(value)
    assert histogram.count == sum(histogram.counts) == len(values)
    for i, bound in enumerate(SECONDS_BOUNDS):
        assert sum(histogram.counts[:i + 1]) == sum(1 for v in values if v <= bound)
    assert histogram.sum == pytest.approx(sum(values))


def test_failure_reasons():
    assert [failure_reason(s) for s in (200, 400, 401, 404, 413, 429, 500, 503, 504)] == [
        None, "bad_input", "unauthorized", "bad_input", "bad_input", "rejected", "model_error", "rejected", "timeout"]


def _snapshot(pid, requests, queue, ready, cpu, rss):
    return {"pid": pid, "time": 0, "requests": [["vertex", "m", "1", 200, [requests] + [0] * len(SECONDS_BOUNDS),
                                                   requests * 0.001]],
            "models": [{"name": "m", "version": "1", "ready": ready, "load_seconds": 1.0 + pid, "queue": queue,
                        "in_flight": 0, "inferences": requests, "executions": requests,
                        "queue_seconds": [[requests] + [0] * len(SECONDS_BOUNDS), 0.0],
                        "compute_seconds": [[requests] + [0] * len(SECONDS_BOUNDS), 0.0],
                        "batch_size": [[requests] + [0] * 11, float(requests)]}],
            "process": {"cpu_seconds": cpu, "rss_bytes": rss, "connections": 1}}


def test_counters_add_over_dead_workers_and_gauges_over_live_ones():
    totals = snapshot.merge([(_snapshot(1, 10, 3, 1, 1.0, 100), True), (_snapshot(2, 5, 2, 0, 2.0, 200), True),
                             (_snapshot(3, 7, 9, 1, 4.0, 400), False)])  # pid 3 was replaced
    text = render(totals).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    labels = (("model", "m"), ("version", "1"))
    assert samples[("hyperserve_requests_total", (*labels[:1], ("profile", "vertex"), ("status_class", "2xx"),
                                                  labels[1]))] == 22
    assert samples[("hyperserve_inferences_total", labels)] == 22
    assert samples[("hyperserve_queue_length", labels)] == 5  # live workers only
    assert samples[("hyperserve_model_ready", labels)] == 0  # one live worker is not ready
    assert samples[("hyperserve_model_load_seconds", labels)] == 3.0
    assert samples[("hyperserve_process_cpu_seconds_total", ())] == 7.0  # the replaced one's CPU counts
    assert samples[("hyperserve_process_resident_memory_bytes", ())] == 300
    assert samples[("hyperserve_workers", ())] == 2


def test_snapshots_are_written_whole_and_marked_dead(tmp_path):
    own = _snapshot(os.getpid(), 1, 0, 1, 0.5, 10)
    other = _snapshot(99999999, 4, 0, 1, 0.5, 10)
    snapshot.write(str(tmp_path), other)
    snapshot.mark_dead(str(tmp_path), 99999999)
    found = snapshot.read_all(str(tmp_path), own)
    assert sorted((s["pid"], live) for s, live in found) == [(os.getpid(), True), (99999999, False)]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_worker_renamed_dead_between_listing_and_reading_still_counts(tmp_path, monkeypatch):
    snapshot.write(str(tmp_path), _snapshot(99999999, 4, 0, 1, 0.5, 10))
    listed = [str(tmp_path / "worker-99999999.json")]
    snapshot.mark_dead(str(tmp_path), 99999999)
    monkeypatch.setattr(snapshot.glob, "glob", lambda pattern: listed)
    found = snapshot.read_all(str(tmp_path), _snapshot(os.getpid(), 1, 0, 1, 0.5, 10))
    assert sorted((s["pid"], live) for s, live in found) == [(os.getpid(), True), (99999999, False)]


class _Plane:
    """What WorkerMetrics reads, reduced to a pid and a request count."""

    recorder = None

    def __init__(self, pid):
        self.pid, self.requests = pid, 0


def _requests_total(page: bytes) -> float:
    return sum(s.value for family in text_string_to_metric_families(page.decode()) for s in family.samples
               if s.name == "hyperserve_requests_total")


def test_scrapes_answered_by_different_workers_never_go_down(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "worker_snapshot",
                        lambda plane, recorder, connections: _snapshot(plane.pid, plane.requests, 0, 1, 0.0, 1))
    a, b = WorkerMetrics(_Plane(1), str(tmp_path)), WorkerMetrics(_Plane(2), str(tmp_path))
    a.plane.requests, b.plane.requests = 10, 5
    a._write(*a.snapshot())
    b._write(*b.snapshot())  # both flushed once
    a.plane.requests = 17  # A counts 7 more and is scraped before its next flush
    seen = [_requests_total(asyncio.run(a.scrape()))]
    seen.append(_requests_total(asyncio.run(b.scrape())))  # B answers next: A's 7 must be in it
    b.plane.requests = 6
    seen.append(_requests_total(asyncio.run(a.scrape())))  # B's file is from its own scrape
    seen.append(_requests_total(asyncio.run(b.scrape())))
    assert seen == [22, 22, 22, 23]


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "worker_snapshot",
                        lambda plane, recorder, connections: _snapshot(plane.pid, plane.requests, 0, 1, 0.0, 1))
    worker = WorkerMetrics(_Plane(7), str(tmp_path))
    worker.plane.requests = 1
    older = worker.snapshot()
    worker.plane.requests = 2
    worker._write(*worker.snapshot())
    worker._write(*older)  # a flush whose thread ran late
    assert snapshot.read_all(str(tmp_path), _snapshot(8, 0, 0, 1, 0.0, 1))[1][0]["models"][0]["inferences"] == 2


@pytest.mark.parametrize("headers, expected", [
    ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
     ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)),
    ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
     ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)),
    ({"x-cloud-trace-context": "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1"},
     ("4bf92f3577b34da6a3ce929d0e0e4736", "0000000000000001", True)),
    ({"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, None),
    ({"traceparent": "garbage"}, None), ({"x-cloud-trace-context": "nothex/1"}, None), ({}, None)])
def test_trace_headers(headers, expected):
    assert trace_of(headers) == expected


def test_tokens_are_read_checked_and_reloaded(tmp_path, monkeypatch):
    path = tmp_path / "tokens"
    path.write_text("# comment\nalpha\n\n  beta  \n")
    tokens = AccessTokens(str(path))
    assert tokens.allows("alpha") and tokens.allows("beta")
    assert not tokens.allows("gamma") and not tokens.allows(None) and not tokens.allows("# comment")
    path.write_text("gamma\n")
    monkeypatch.setattr("hyperserve.server.access.RELOAD_CHECK_S", 0.0)
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    assert tokens.allows("gamma") and not tokens.allows("alpha")
    path.unlink()
    assert not tokens.allows("gamma")  # gone: fail closed
    with pytest.raises(ServingError, match="holds no token"):
        empty = tmp_path / "empty"
        empty.write_text("\n# nothing\n")
        AccessTokens(str(empty))


def test_the_token_a_request_presents():
    assert presented({"authorization": "Bearer abc"}) == "abc"
    assert presented({"authorization": "bearer  abc "}) == "abc"
    assert presented({"authorization": "Basic abc"}) is None
    assert presented({"x-api-key": "k"}) == "k"
    assert presented({}) is None


def test_the_guard_covers_api_routes_only_by_default(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("t\n")
    guard = Guard(AccessTokens(str(path)))
    assert guard.covers("api") and not guard.covers("health") and not guard.covers("metrics")
    assert Guard(AccessTokens(str(path)), health=True, metrics=True).covers("metrics")
    assert guard.refusal({"x-api-key": "t"}) is None
    message, headers = guard.refusal({"x-api-key": "u"})
    assert "not valid" in message and 'error="invalid_token"' in headers["www-authenticate"]


@pytest.mark.parametrize("uri, expected", [
    ("s3://bucket/a/b", ("s3", "bucket", "a/b")), ("gs://b", ("gs", "b", "")),
    ("az://models/iris/model.joblib", ("az", "models", "iris/model.joblib")),
    ("https://acct.blob.core.windows.net/models/iris", ("az", "acct/models", "iris")),
    ("https://example.com/m/model.mar", ("https", "example.com", "m/model.mar"))])
def test_store_uris(uri, expected):
    assert split(uri) == expected


class FlakyStore:
    """Gives short or wrong bytes the first ``bad`` times."""

    scheme = "test"

    def __init__(self, data: bytes, bad: int, wrong: bool = False):
        self.data, self.bad, self.wrong, self.reads = data, bad, wrong, 0

    def uri(self, key):
        return f"test://b/{key}"

    def read_into(self, obj, out):
        self.reads += 1
        if self.reads <= self.bad:
            out.write(b"x" * len(self.data) if self.wrong else self.data[: len(self.data) // 2])
            return
        out.write(self.data)


def _object(data: bytes) -> StoredObject:
    return StoredObject("k", len(data), hashlib.md5(data, usedforsecurity=False).digest(), "v1")


@pytest.mark.parametrize("wrong", [False, True])
def test_a_short_or_corrupt_transfer_is_tried_again(tmp_path, monkeypatch, wrong):
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)
    data = os.urandom(4096)
    store = FlakyStore(data, bad=2, wrong=wrong)
    assert download.download_object(store, _object(data), tmp_path / "f") == len(data)
    assert (tmp_path / "f").read_bytes() == data and store.reads == 3
    store = FlakyStore(data, bad=3, wrong=wrong)
    with pytest.raises(StorageError, match="corrupt" if wrong else "incomplete"):
        download.download_object(store, _object(data), tmp_path / "g")
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob("*.partial"))


def test_eviction_keeps_the_cache_within_its_limit(tmp_path):
    for i, name in enumerate(("old", "mid", "new")):
        copy = tmp_path / name
        copy.mkdir()
        (copy / "weights").write_bytes(b"w" * 1000)
        (copy / download.COMPLETE).write_bytes(b"{}")
        os.utime(copy / download.COMPLETE, (1000 + i, 1000 + i))
    download.evict(tmp_path, 2500, keep=tmp_path / "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]  # the least recent other one went


def test_read_bytes_of_a_store():
    from hyperserve.server.repository.stores import read_bytes

    class One:
        def get(self, key):
            return StoredObject(key, 3, None, "") if key == "a" else None

        def read_into(self, obj, out: io.BytesIO):
            out.write(b"abc")

    assert read_bytes(One(), "a") == b"abc" and read_bytes(One(), "b") is None
