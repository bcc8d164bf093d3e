"""Each worker's metrics as one JSON document, written to the shared metrics directory about once
a second (and at exit), and the merge of every worker's into the server's totals.

Why files and not prometheus-client's multiprocess mode: its values are mmap'd, so every
increment of every metric takes a lock and writes a file page; at our request rate that cost more
than the 3% the issue allows (bench/README, "metrics"). Here the request path touches only
in-process numbers and a snapshot costs the worker ~0.1 ms a second. The layout keeps that mode's
rules: a replaced worker's file stays (renamed dead-<pid>.json by the supervisor), so counters
survive it, while its gauges leave with it.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from typing import Any

import orjson

from .histogram import BATCH_BOUNDS, Histogram

log = logging.getLogger("hyperserve.metrics")

LIVE_PREFIX, DEAD_PREFIX = "worker-", "dead-"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_snapshot(plane, recorder, connections: int) -> dict[str, Any]:
    """This process's numbers now (read on the event loop, where they change)."""
    requests = [[profile, model.name if model is not None else "", model.version if model is not None else "",
                 status, histogram.counts[:], histogram.sum]
                for (profile, model, status), histogram in list(recorder.table.items())]
    models = []
    for model in plane.models:
        runner = model.runner
        entry = {"name": model.name, "version": model.version, "ready": 1 if plane.model_ready(model) else 0,
                 "load_seconds": model.load_seconds}
        if runner is not None:
            batch = Histogram(BATCH_BOUNDS)
            for size, calls in runner.batch_sizes.items():
                batch.observe_many(size, calls)
            entry.update(queue=len(runner.queue), in_flight=runner.busy, inferences=runner.stats.instances,
                         executions=runner.stats.calls, queue_seconds=runner.queue_seconds.state(),
                         compute_seconds=runner.compute_seconds.state(), batch_size=batch.state())
        models.append(entry)
    times = os.times()
    return {"pid": os.getpid(), "time": time.time(), "requests": requests, "models": models,
            "process": {"cpu_seconds": times.user + times.system, "rss_bytes": _rss_bytes(),
                        "connections": connections}}


def write(directory: str, snapshot: dict[str, Any]) -> None:
    """Atomically: a scrape never reads half a file."""
    path = os.path.join(directory, f"{LIVE_PREFIX}{snapshot['pid']}.json")
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "wb") as out:
        out.write(orjson.dumps(snapshot))
    os.replace(partial, path)


def mark_dead(directory: str, pid: int) -> None:
    """The supervisor reaped ``pid``: its counters stay in the totals, its gauges leave them."""
    path = os.path.join(directory, f"{LIVE_PREFIX}{pid}.json")
    try:
        os.replace(path, os.path.join(directory, f"{DEAD_PREFIX}{pid}.json"))
    except FileNotFoundError:
        pass


def _load(path: str) -> dict[str, Any] | None:
    """A worker's snapshot, or None when the file is gone."""
    try:
        with open(path, "rb") as source:
            return orjson.loads(source.read())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as err:  # written atomically: only a damaged disk
        log.debug("skipping metrics file %s: %s", path, err)
        return None


def read_all(directory: str | None, own: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """(snapshot, live) for every worker: ``own`` instead of this process's file."""
    found = [(own, True)]
    if not directory:
        return found
    for path in glob.glob(os.path.join(directory, "*.json")):
        name = os.path.basename(path)
        live = name.startswith(LIVE_PREFIX)
        if live and name == f"{LIVE_PREFIX}{own['pid']}.json":
            continue
        loaded = _load(path)
        if loaded is None and live:  # the supervisor renamed it dead-<pid> between listing and reading
            loaded, live = _load(os.path.join(directory, DEAD_PREFIX + name[len(LIVE_PREFIX):])), False
        if loaded is not None:
            found.append((loaded, live))
    return found


def merge(snapshots: list[tuple[dict[str, Any], bool]]) -> dict[str, Any]:
    """Counters and histograms summed over every worker that ever ran; gauges over live ones:
    queue, calls in flight, memory and connections summed, readiness the least (a model is ready
    only when every worker has it), load time the longest."""
    requests: dict[tuple, list] = {}
    models: dict[tuple, dict[str, Any]] = {}
    process = {"cpu_seconds": 0.0, "rss_bytes": 0, "connections": 0, "workers": 0}
    for snapshot, live in snapshots:
        for profile, name, version, status, counts, total in snapshot["requests"]:
            key = (profile, name, version, status)
            requests[key] = Histogram.merge(requests.get(key), [counts, total])
        for entry in snapshot["models"]:
            key = (entry["name"], entry["version"])
            merged = models.setdefault(key, {"ready": None, "load_seconds": 0.0, "queue": 0, "in_flight": 0,
                                             "inferences": 0, "executions": 0, "queue_seconds": None,
                                             "compute_seconds": None, "batch_size": None})
            merged["inferences"] += entry.get("inferences", 0)
            merged["executions"] += entry.get("executions", 0)
            for histogram in ("queue_seconds", "compute_seconds", "batch_size"):
                if histogram in entry:
                    merged[histogram] = Histogram.merge(merged[histogram], entry[histogram])
            if live:
                merged["ready"] = entry["ready"] if merged["ready"] is None else min(merged["ready"], entry["ready"])
                merged["load_seconds"] = max(merged["load_seconds"], entry["load_seconds"])
                merged["queue"] += entry.get("queue", 0)
                merged["in_flight"] += entry.get("in_flight", 0)
        process["cpu_seconds"] += snapshot["process"]["cpu_seconds"]
        if live:
            process["workers"] += 1
            process["rss_bytes"] += snapshot["process"]["rss_bytes"]
            process["connections"] += snapshot["process"]["connections"]
    return {"requests": requests, "models": models, "process": process}
