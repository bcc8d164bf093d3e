"""A fixed-bucket histogram kept in plain Python numbers: an observation is one bisect and three
additions, cheap enough for every request (prometheus-client's costs more; see bench/README)."""

from __future__ import annotations

from bisect import bisect_left

# Seconds: from a small model's sub-millisecond answer to a minute-long generation.
SECONDS_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Instances per framework call.
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Counts per bucket (``counts[i]``: observations <= bounds[i]; the last: above every bound)
    and their sum. Prometheus's buckets are cumulative; ``cumulative()`` makes them so."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple = SECONDS_BOUNDS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, times: int) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times

    @property
    def count(self) -> int:
        return sum(self.counts)

    def state(self) -> list:
        """[counts, sum]: what a snapshot stores, and ``merge`` adds."""
        return [list(self.counts), self.sum]

    @staticmethod
    def merge(into: list | None, state: list) -> list:
        if into is None:
            return [list(state[0]), state[1]]
        into[0] = [a + b for a, b in zip(into[0], state[0])]
        into[1] += state[1]
        return into
