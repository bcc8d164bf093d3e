"""The ``context`` TorchServe handlers are given: the same attributes and methods as ts.context.Context,
so handlers written for TorchServe (and its BaseHandler) run unchanged."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any


class Metric:
    def __init__(self, name: str, value: float, unit: str, dimensions: list | None, metric_type: str):
        self.name, self.value, self.unit, self.dimensions, self.metric_type = name, value, unit, dimensions, metric_type
        self.timestamp = time.time()

    def update(self, value: float) -> None:
        self.value = value if self.metric_type != "counter" else self.value + value
        self.timestamp = time.time()

    def __repr__(self) -> str:
        return f"{self.name}.{self.unit}:{self.value}|#{self.dimensions or ''}"


class Metrics:
    """What ``context.metrics`` offers handlers (ts.metrics.metric_cache_abstract's method names);
    the values are kept per metric name for the model's stats."""

    def __init__(self, model_name: str):
        self.model_name = model_name
        self.request_ids: dict | None = None
        self._lock = threading.Lock()
        self.cache: dict[str, Metric] = {}
        self.counts: defaultdict[str, int] = defaultdict(int)

    def add_metric(self, name: str, value: float, unit: str = "", idx=None, dimensions: list | None = None,
                   metric_type: str = "gauge") -> Metric:
        with self._lock:
            metric = self.cache.get(name)
            if metric is None:
                metric = self.cache[name] = Metric(name, value, unit, dimensions, metric_type)
            else:
                metric.update(value)
            self.counts[name] += 1
            return metric

    def add_counter(self, name: str, value: float, idx=None, dimensions: list | None = None) -> Metric:
        return self.add_metric(name, value, "count", idx, dimensions, "counter")

    def add_time(self, name: str, value: float, idx=None, unit: str = "ms", dimensions: list | None = None,
                 metric_type: str = "gauge") -> Metric:
        if unit not in ("ms", "s", "us", "NS", "ns"):
            raise ValueError(f"the unit of a time metric is ms, s, us or ns, got {unit!r}")
        return self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_size(self, name: str, value: float, idx=None, unit: str = "MB", dimensions: list | None = None,
                 metric_type: str = "gauge") -> Metric:
        if unit not in ("MB", "kB", "GB", "B"):
            raise ValueError(f"the unit of a size metric is MB, kB, GB or B, got {unit!r}")
        return self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_percent(self, name: str, value: float, idx=None, dimensions: list | None = None,
                    metric_type: str = "gauge") -> Metric:
        return self.add_metric(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: Any, dimensions: list | None = None) -> Metric:
        return self.add_metric(name, 1, "", None, dimensions, "counter")

    def get_metric(self, name: str, metric_type: str | None = None) -> Metric | None:
        return self.cache.get(name)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {name: {"value": m.value, "unit": m.unit, "count": self.counts[name]} for name, m in self.cache.items()}


class RequestProcessor:
    """One request's headers in, and its response status and headers out."""

    def __init__(self, request_header: dict[str, Any]):
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class Context:
    """Model-level facts fixed at load, and per-call request ids and headers set before each handle()."""

    def __init__(self, model_name: str, model_dir: str, manifest: dict[str, Any], batch_size: int,
                 gpu: int | None, server_version: str, metrics: Metrics,
                 model_yaml_config: dict[str, Any] | None = None, limit_max_image_pixels: bool = True):
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": "MMS",  # what TorchServe reports; some handlers test for it
            "server_version": server_version,
            "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None
        self.metrics = metrics
        self.model_yaml_config = model_yaml_config or {}
        self.stopping_criteria = None
        self.header_key_sequence_id = "ts_request_sequence_id"

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self.request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor is not None and self.request_processor[idx] is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor or []:
            processor.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_sequence_id(self, idx: int) -> Any:
        return self.request_processor[idx].get_request_property(self.header_key_sequence_id)
