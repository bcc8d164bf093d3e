"""The merged totals in Prometheus's text format, through prometheus-client's metric families.

Names are ``hyperserve_*``; README's "Metrics" table maps each to Triton's, KServe's and
TorchServe's. Every model metric is labelled ``model`` and ``version``; request metrics add
``profile`` (the protocol profile that answered: vertex, v2, grpc, ...)."""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from .histogram import BATCH_BOUNDS, SECONDS_BOUNDS, Histogram
from .recorder import failure_reason, status_class

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_LABELS = ["model", "version", "profile"]
MODEL_LABELS = ["model", "version"]


def _buckets(bounds: tuple, counts: list[int]) -> list[tuple[str, int]]:
    running, out = 0, []
    for bound, count in zip((*bounds, float("inf")), counts):
        running += count
        out.append((floatToGoString(bound), running))
    return out


def families(totals: dict[str, Any]) -> Iterable:
    requests = CounterMetricFamily("hyperserve_requests", "Requests answered, by status class",
                                   labels=[*REQUEST_LABELS, "status_class"])
    failures = CounterMetricFamily("hyperserve_request_failures", "Requests answered with an error, by reason "
                                   "(bad_input, unauthorized, rejected, timeout, model_error, server_error)",
                                   labels=[*REQUEST_LABELS, "reason"])
    duration = HistogramMetricFamily("hyperserve_request_duration_seconds",
                                     "End-to-end seconds, from the whole request read to its answer written",
                                     labels=REQUEST_LABELS)
    by_class: dict[tuple, int] = {}
    by_reason: dict[tuple, int] = {}
    durations: dict[tuple, list] = {}
    for (profile, name, version, status), (counts, total) in totals["requests"].items():
        labels = (name, version, profile)
        answers = sum(counts)
        key = (*labels, status_class(status))
        by_class[key] = by_class.get(key, 0) + answers
        reason = failure_reason(status)
        if reason is not None:
            key = (*labels, reason)
            by_reason[key] = by_reason.get(key, 0) + answers
        if status < 400 or name:  # a model's failures count in its latency; a stray 404 does not
            durations[labels] = Histogram.merge(durations.get(labels), [counts, total])
    for key, value in sorted(by_class.items()):
        requests.add_metric(list(key), value)
    for key, value in sorted(by_reason.items()):
        failures.add_metric(list(key), value)
    for key, (counts, total) in sorted(durations.items()):
        duration.add_metric(list(key), _buckets(SECONDS_BOUNDS, counts), total)
    yield from (requests, failures, duration)

    inferences = CounterMetricFamily("hyperserve_inferences", "Instances (rows) the model ran", labels=MODEL_LABELS)
    executions = CounterMetricFamily("hyperserve_executions", "Framework calls (batches) the model ran",
                                     labels=MODEL_LABELS)
    queue_s = HistogramMetricFamily("hyperserve_queue_duration_seconds",
                                    "Seconds each request waited in the model's queue", labels=MODEL_LABELS)
    compute_s = HistogramMetricFamily("hyperserve_compute_duration_seconds",
                                      "Seconds each framework call took (one observation per batch)",
                                      labels=MODEL_LABELS)
    batch = HistogramMetricFamily("hyperserve_batch_size", "Instances per framework call", labels=MODEL_LABELS)
    queue = GaugeMetricFamily("hyperserve_queue_length", "Requests waiting for the model (all workers)",
                              labels=MODEL_LABELS)
    in_flight = GaugeMetricFamily("hyperserve_calls_in_flight", "Framework calls running now (all workers)",
                                  labels=MODEL_LABELS)
    ready = GaugeMetricFamily("hyperserve_model_ready", "1 when every worker has the model ready, else 0",
                              labels=MODEL_LABELS)
    load = GaugeMetricFamily("hyperserve_model_load_seconds", "Seconds the model took to load (slowest worker)",
                             labels=MODEL_LABELS)
    for (name, version), entry in sorted(totals["models"].items()):
        labels = [name, version]
        inferences.add_metric(labels, entry["inferences"])
        executions.add_metric(labels, entry["executions"])
        for family, key, bounds in ((queue_s, "queue_seconds", SECONDS_BOUNDS),
                                    (compute_s, "compute_seconds", SECONDS_BOUNDS),
                                    (batch, "batch_size", BATCH_BOUNDS)):
            if entry[key] is not None:
                family.add_metric(labels, _buckets(bounds, entry[key][0]), entry[key][1])
        queue.add_metric(labels, entry["queue"])
        in_flight.add_metric(labels, entry["in_flight"])
        ready.add_metric(labels, entry["ready"] or 0)
        load.add_metric(labels, entry["load_seconds"])
    yield from (inferences, executions, queue_s, compute_s, batch, queue, in_flight, ready, load)

    process = totals["process"]
    yield CounterMetricFamily("hyperserve_process_cpu_seconds", "CPU seconds used by the worker processes, "
                              "replaced ones included", value=process["cpu_seconds"])
    yield GaugeMetricFamily("hyperserve_process_resident_memory_bytes", "Resident memory of the live workers, summed",
                            value=process["rss_bytes"])
    yield GaugeMetricFamily("hyperserve_open_connections", "Open HTTP connections, all workers",
                            value=process["connections"])
    yield GaugeMetricFamily("hyperserve_workers", "Worker processes serving", value=process["workers"])


class _Totals:
    def __init__(self, totals: dict[str, Any]):
        self.totals = totals

    def collect(self):
        return families(self.totals)


def render(totals: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Totals(totals))
    return generate_latest(registry)
