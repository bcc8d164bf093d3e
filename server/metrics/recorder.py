"""What the transports record of every answer: a count and the end-to-end seconds, keyed by
(protocol profile, deployed model, status). The key's labels are made only when a scrape reads it,
so an answer costs a dict lookup and a histogram observation."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from time import perf_counter
from typing import Any, Callable

from .histogram import SECONDS_BOUNDS, Histogram

# An answer's status → the failure reason metrics name (Triton's: REJECTED, ...); None: a success.
def failure_reason(status: int) -> str | None:
    if status < 400:
        return None
    if status in (401, 403):
        return "unauthorized"
    if status in (408, 504):
        return "timeout"
    if status in (429, 503):
        return "rejected"
    if status < 500:
        return "bad_input"
    return "model_error" if status == 500 else "server_error"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class RequestRecorder:
    """``answered(request, status)`` is the transports' hook, called once per answer. With timing
    off it only counts error statuses (the /stats route's), as the server did before metrics."""

    def __init__(self, error_answers: Counter | None = None, *, timed: bool = True):
        self.error_answers = error_answers if error_answers is not None else Counter()
        self.table: dict[tuple, Histogram] = {}
        self.timed = timed
        self.observers: list[Callable[[Any, int, float], None]] = []
        self.answered: Callable[[Any, int], None] = self._timed if timed else self._count_error

    def also(self, observer: Callable[[Any, int, float], None]) -> None:
        """Call ``observer(request, status, seconds)`` after each answer too (the access log, spans)."""
        self.observers.append(observer)
        record, observers = self.record, self.observers

        def answered(request, status: int) -> None:
            seconds = perf_counter() - request.started
            record(request.profile, request.model, status, seconds)
            for each in observers:
                each(request, status, seconds)

        self.answered = answered

    def _timed(self, request, status: int) -> None:
        key = (request.profile, request.model, status)
        histogram = self.table.get(key)
        if histogram is None:
            histogram = self.table[key] = Histogram()
        seconds = perf_counter() - request.started
        histogram.counts[bisect_left(SECONDS_BOUNDS, seconds)] += 1  # Histogram.observe, inline: every answer
        histogram.sum += seconds
        if status >= 400:
            self.error_answers[status] += 1

    def _count_error(self, request, status: int) -> None:
        if status >= 400:
            self.error_answers[status] += 1

    def record(self, profile: str, model, status: int, seconds: float) -> None:
        """An answer given outside the HTTP transport (gRPC), or before a request was whole."""
        if self.timed:
            key = (profile, model, status)
            histogram = self.table.get(key)
            if histogram is None:
                histogram = self.table[key] = Histogram()
            histogram.observe(seconds)
        if status >= 400:
            self.error_answers[status] += 1

    def unparsed(self, status: int) -> None:
        """An error answered to bytes that never became a request (400, 408, 413, 431)."""
        self.record("", None, status, 0.0)
