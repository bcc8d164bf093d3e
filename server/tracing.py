"""OpenTelemetry spans for each request: decode, queue, compute and encode under one server span,
in the caller's trace when it sent a W3C ``traceparent``. On when OTEL_EXPORTER_OTLP_ENDPOINT (or
--otel) is set; off, nothing on the request path changes.

The request path runs on callbacks and model threads, not one coroutine per request, so spans are
not opened and closed as it goes: the scheduler writes each phase's times into the request's
SpanTimes (a few floats), and the spans are made, with those times, once the answer is written.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from typing import Any

from .logs import TRACE, trace_of

log = logging.getLogger("hyperserve.tracing")

# The SpanTimes of the request whose route is running (for routes that await the data plane).
CURRENT_SPANS: contextvars.ContextVar[SpanTimes | None] = contextvars.ContextVar("hyperserve_spans", default=None)


class SpanTimes:
    """When a request's phases began and ended (time.monotonic()), filled in by the scheduler."""

    __slots__ = ("queued", "launched_at", "rows", "call_started", "called", "encoded")

    def __init__(self):
        self.queued = self.launched_at = self.call_started = self.called = self.encoded = 0.0
        self.rows = 0

    def launched(self, now: float, rows: int) -> None:
        self.launched_at = now
        self.rows = rows

    def ran(self, started: float, called: float, encoded: float) -> None:
        self.call_started, self.called, self.encoded = started, called, encoded


def tracing_on(args, environ=os.environ) -> bool:
    return bool(getattr(args, "otel", False) or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def otlp_tracer():
    """A tracer exporting over OTLP/HTTP, configured by the standard OTEL_* variables (endpoint,
    headers, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER). Made in each worker: its export thread
    does not survive a fork."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        raise SystemExit(f"hyperserve: tracing needs the otel extra: pip install 'hyperserve[otel]' ({err})") from None
    from . import __version__

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "hyperserve"),
                                "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("hyperserve", __version__), provider


class RequestSpans:
    """The transport's hook (enter/exit around a request's route) and the recorder's observer
    (after its answer) that together make a request's spans. ``tracer``: an OpenTelemetry tracer."""

    def __init__(self, tracer):
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, set_span_in_context

        self.tracer = tracer
        self._extract = extract
        self._in_context = set_span_in_context
        self._server = SpanKind.SERVER
        # The spans' wall-clock times, from the two clocks the request path reads.
        self._perf_offset = time.time_ns() - time.perf_counter_ns()
        self._mono_offset = time.time_ns() - time.monotonic_ns()

    def enter(self, request) -> tuple:
        request.trace = SpanTimes()
        return CURRENT_SPANS.set(request.trace), TRACE.set(trace_of(request.headers))

    @staticmethod
    def exit(tokens: tuple) -> None:
        CURRENT_SPANS.reset(tokens[0])
        TRACE.reset(tokens[1])

    def _mono(self, seconds: float) -> int:
        return int(seconds * 1e9) + self._mono_offset

    def observe(self, request, status: int, seconds: float) -> None:
        """After the answer: the server span and, for a request the scheduler ran, its phases.
        Only requests to a model are traced: health probes and metadata would flood the traces."""
        times: SpanTimes | None = request.trace
        if times is None or request.model is None:
            return
        self.emit(f"{request.method} {request.path}", request.headers, request.model, times, request.started,
                  seconds, status >= 500, {"http.request.method": request.method, "url.path": request.path,
                                           "http.response.status_code": status, "hyperserve.profile": request.profile})

    def emit(self, name: str, headers: dict[str, str], model, times: SpanTimes, started: float, seconds: float,
             failed: bool, attributes: dict[str, Any]) -> None:
        """A served call's spans: ``started`` is its time.perf_counter() when it arrived."""
        start = int(started * 1e9) + self._perf_offset
        model_labels = {"hyperserve.model": model.name, "hyperserve.model_version": model.version}
        span = self.tracer.start_span(name, context=self._extract(headers), kind=self._server, start_time=start,
                                      attributes={**attributes, **model_labels})
        try:
            if times.launched_at and times.encoded:
                child = {**model_labels, "hyperserve.batch_size": times.rows}
                context = self._in_context(span)
                queued = self._mono(times.queued) if times.queued else start
                for phase, begin, end in (("decode", start, queued),
                                          ("queue", queued, self._mono(times.launched_at)),
                                          ("compute", self._mono(times.call_started), self._mono(times.called)),
                                          ("encode", self._mono(times.called), self._mono(times.encoded))):
                    self.tracer.start_span(phase, context=context, start_time=begin, attributes=child).end(
                        end_time=max(begin, end))
            if failed:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR))
        finally:
            span.end(end_time=start + int(seconds * 1e9))
