"""The one loop that moves a window of the file, shared by every send path.

A window goes out span by span. Before a span moves, its pages must be in the page cache
(``pagecache.ensure_cached``: prefetched by a worker thread if not), since sendfile or a
read of pages still on disk would block the event loop for everyone; the span is at most
``CACHE_CHECK_BYTES`` and what ``--limit-rate`` allows; the pacer sleeps after it. What
moves a span (sendfile on a dup, loop.sendfile, pread + write) is the path's ``move``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..files.pagecache import ensure_cached
from .channel import FileShrank, Tally
from .pacing import Pacer

# File bytes are checked against the page cache this many at a time before they move.
CACHE_CHECK_BYTES = 8 * 1024 * 1024

# move(offset, count) -> bytes moved (1..count), 0 when the file has no more.
Move = Callable[[int, int], Awaitable[int]]


async def send_window(
    fd: int, offset: int, length: int, move: Move, pacer: Pacer | None, tally: Tally
) -> None:
    """Move ``length`` bytes of ``fd`` from ``offset``; FileShrank if the file ends first."""
    end = offset + length
    checked_until = offset
    while offset < end:
        if offset >= checked_until:
            span = min(end - offset, CACHE_CHECK_BYTES)
            await ensure_cached(fd, offset, span)
            checked_until = offset + span
        count = checked_until - offset
        if pacer is not None:
            count = pacer.cap(count)
        n = await move(offset, count)
        if n <= 0:
            # Still owing bytes but the file has none: it shrank. The promised length can
            # no longer be met; the connection must close (RFC 9112 §6.3 framing).
            raise FileShrank("file ended before Content-Length")
        offset += n
        tally.sent += n
        if pacer is not None:
            await pacer.sent_bytes(n)
