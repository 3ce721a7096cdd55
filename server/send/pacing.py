"""``--limit-rate``: pacing one response without giving up sendfile."""

from __future__ import annotations

import asyncio


class Pacer:
    """--limit-rate for one response: the first ``after`` bytes at full speed, then
    ``rate`` bytes per second, sent in chunks of a tenth of a second's worth.

    The senders only cap how much one call may move and sleep until the bytes sent so far
    are due, so sendfile stays sendfile: pacing costs no copy.
    """

    __slots__ = ("after", "chunk", "loop", "rate", "sent", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: int, after: int) -> None:
        self.loop = loop
        self.rate = rate
        self.after = after
        self.chunk = max(rate // 10, 1024)
        self.sent = 0
        self.started = -1.0  # loop time when the limit began to apply

    def cap(self, count: int) -> int:
        """How much of ``count`` may go in the next call."""
        if self.sent < self.after:
            return min(count, self.after - self.sent)
        return min(count, self.chunk)

    async def sent_bytes(self, n: int) -> None:
        """Account for ``n`` bytes sent; sleep until the next ones may go."""
        self.sent += n
        if self.sent <= self.after:
            return
        now = self.loop.time()
        if self.started < 0:
            self.started = now
            self.sent = self.after + n  # the limit counts from here
        due = self.started + (self.sent - self.after) / self.rate
        if due > now:
            await asyncio.sleep(due - now)
