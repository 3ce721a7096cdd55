"""Counters of what the server sent and how: for the debug log, tests and /metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

# Response time buckets, seconds (Prometheus "le" bounds; +Inf is implied).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Stats:
    """Responses by method and status, body bytes and responses per send path ("cache",
    "inline", "sendfile", "loop.sendfile", "buffered", ...), connections, response times."""

    __slots__ = (
        "bytes_by_path",
        "connections_total",
        "latency_counts",
        "latency_sum",
        "requests",
        "responses_by_path",
    )

    def __init__(self) -> None:
        self.responses_by_path: Counter[str] = Counter()
        self.bytes_by_path: Counter[str] = Counter()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.connections_total = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last is +Inf
        self.latency_sum = 0.0

    def response(self, method: str, status: int, seconds: float) -> None:
        """One response finished, ``seconds`` after its request was complete."""
        self.requests[(method, status)] += 1
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
