"""Counters of what the server sent and how, for logs, tests and (later) metrics."""

from __future__ import annotations

from collections import Counter


class Stats:
    """Responses and body bytes per send path ("inline", "sendfile", "buffered", ...)."""

    __slots__ = ("bytes_by_path", "responses_by_path")

    def __init__(self) -> None:
        self.responses_by_path: Counter[str] = Counter()
        self.bytes_by_path: Counter[str] = Counter()
