"""The buffered path: ``pread`` + ``transport.write`` with flow control.

The fallback for ``--no-sendfile``, TLS, and file systems without sendfile. Reads of
cached pages happen on the loop thread, others in a worker thread (``read_chunk``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from ..files.members import MemberChanged, opened_member
from ..files.pagecache import read_chunk
from ..http.multipart import FileWindow, MemberWindow
from ..http.plan import ResponsePlan
from .channel import Channel, ClientGone, SendAborted, Tally
from .pacing import Pacer
from .spans import Move, send_window

log = logging.getLogger("zerocopy.send")

FALLBACK = "buffered-fallback"  # the via of a response a zero-copy path handed over


class Unsupported(Exception):
    """Raised by a zero-copy ``move``: this file cannot be sent that way (some FUSE or
    /proc files refuse sendfile); the rest goes buffered."""


# Large enough to keep syscalls few, small enough that many slow clients do not hold much
# memory (one chunk plus the transport's high-water mark each).
BUFFERED_CHUNK = 256 * 1024


# Give other connections a turn after this many bytes written without waiting: cached
# reads and a transport that keeps accepting writes never suspend on their own.
YIELD_EVERY_BYTES = 4 * 1024 * 1024


def buffered_move(channel: Channel, fd: int) -> Move:
    """The buffered ``move``: wait while the transport is full, read a chunk, write it.

    The wait comes first, so that a chunk written is counted (returned) at once: a send
    cancelled while it waits has already accounted for every byte it handed over.
    """
    since_yield = 0

    async def move(offset: int, count: int) -> int:
        nonlocal since_yield
        if channel.write_paused:
            await channel.writable()
            since_yield = 0
        elif since_yield >= YIELD_EVERY_BYTES:
            await asyncio.sleep(0)
            since_yield = 0
        try:
            chunk = await read_chunk(fd, min(count, BUFFERED_CHUNK), offset)
        except OSError as exc:
            raise SendAborted(f"read failed: {exc.strerror}") from exc
        if not chunk:
            return 0
        if channel.is_closing():
            raise ClientGone("connection closed")
        channel.write(chunk)
        since_yield += len(chunk)
        return len(chunk)

    return move


@contextlib.contextmanager
def opened(plan: ResponsePlan, seg: MemberWindow) -> Iterator[int]:
    """An archive member's descriptor for one window; a member changed since the plan was
    made aborts the response."""
    try:
        with opened_member(plan.members[seg.member]) as fd:
            yield fd
    except MemberChanged as exc:
        raise SendAborted(str(exc)) from exc


async def send_window_or_buffered(
    channel: Channel, fd: int, seg: FileWindow, move: Move, pacer: Pacer | None, tally: Tally
) -> None:
    """A window by ``move``; if it raises Unsupported, the rest of the window, and every
    later one (``tally.via`` says so), goes through the transport, in order."""
    start = tally.sent
    if tally.via != FALLBACK:
        try:
            await send_window(fd, seg.offset, seg.length, move, pacer, tally)
            return
        except Unsupported:
            log.debug("sendfile unavailable for this file; falling back to buffered")
            tally.via = FALLBACK
    done = tally.sent - start
    rest = buffered_move(channel, fd)
    await send_window(fd, seg.offset + done, seg.length - done, rest, pacer, tally)


async def send_buffered(
    channel: Channel,
    head: bytes,
    plan: ResponsePlan,
    fd: int | None,
    pacer: Pacer | None,
    tally: Tally,
) -> Tally:
    """Write the head and body through the transport, respecting flow control."""
    if channel.is_closing():
        raise ClientGone("connection closed")
    channel.write(head)
    move = buffered_move(channel, fd) if fd is not None else None
    for seg in plan.segments:
        if isinstance(seg, FileWindow):
            assert fd is not None and move is not None
            await send_window(fd, seg.offset, seg.length, move, pacer, tally)
        elif isinstance(seg, MemberWindow):
            with opened(plan, seg) as member:
                own = buffered_move(channel, member)
                await send_window(member, seg.offset, seg.length, own, pacer, tally)
        else:
            if channel.is_closing():
                raise ClientGone("connection closed")
            channel.write(seg)
            tally.sent += len(seg)
            await channel.writable()
    return tally
