"""Senders: execute a response plan's body over one of three paths.

* ``inline``: small bodies are read (page-cache hits only) into the same buffer as the head
  and go out in one ``transport.write``. Sendfile on a few KiB stalls on Nagle/delayed-ACK
  and costs more syscalls than the copy it saves.
* ``sendfile``: our own zero-copy path for any loop (used on uvloop, which implements no
  sendfile). ``os.sendfile`` runs on an ``os.dup()`` of the connection's socket, waiting
  for writability with ``add_writer`` on the dup (loops refuse the transport's own fd).
* ``loop.sendfile``: the stdlib loop's native ``loop.sendfile(transport, ...)``.
* ``buffered``: 256 KiB ``pread`` + ``transport.write`` with flow control; the fallback for
  ``--no-sendfile``, for file systems without sendfile and (later) TLS.

Every sender writes exactly ``plan.body_length`` bytes or raises ``SendAborted``; the
caller then closes the connection, since the response framing can no longer be kept.
Senders never close the file descriptor: the connection does.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiofiles.os import wrap as _aio_wrap

from .multipart import FileWindow
from .plan import ResponsePlan

if TYPE_CHECKING:
    from .protocol import HttpProtocol

# Linux moves at most 0x7ffff000 bytes per sendfile call (MAX_RW_COUNT).
SENDFILE_MAX_CHUNK = 0x7FFFF000
# File bytes are checked against the page cache this many at a time before sendfile
# moves them: sendfile on pages still on disk would block the event loop for everyone.
CACHE_CHECK_BYTES = 8 * 1024 * 1024
# Buffered path chunk: large enough to keep syscalls few, small enough that many slow
# clients do not hold much memory (one chunk plus the transport's high-water mark each).
BUFFERED_CHUNK = 256 * 1024
# Give other connections a turn after this many bytes sent without waiting: on loopback a
# fast reader drains the socket as fast as we fill it and the loop would never come back.
YIELD_EVERY_BYTES = 4 * 1024 * 1024
# Bodies up to this size go out inline, and are kept in the file cache. Measured (README
# "Performance"): served from the cache, a 64 KiB file makes 43 k req/s inline against
# 19 k with sendfile, since per-request work, not copying, is what costs here.
DEFAULT_INLINE_MAX = 64 * 1024

# errnos that mean "sendfile cannot serve this file or socket": fall back to buffered.
_SENDFILE_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_pread_in_thread = _aio_wrap(os.pread)


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


class SendAborted(Exception):
    """The response cannot be completed (client gone, file shrank, read error)."""


class FileShrank(SendAborted):
    """The file ended before the promised Content-Length."""


# --- inline ------------------------------------------------------------------------------


class _NoWait:
    """Whether ``preadv(RWF_NOWAIT)`` works here; turned off at the first refusal."""

    enabled = _RWF_NOWAIT is not None


def _preadv_cached(fd: int, buf: bytearray | memoryview, offset: int) -> int | None:
    """``preadv`` with RWF_NOWAIT: the bytes read from the page cache, or None when the
    data is not cached or this kernel/file system cannot say (RWF_NOWAIT is then turned
    off for good, and ``_NoWait.enabled`` tells the two cases apart)."""
    if not _NoWait.enabled:
        return None
    try:
        return os.preadv(fd, [buf], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno not in _SENDFILE_UNSUPPORTED:
            raise
        _NoWait.enabled = False  # kernel or file system without RWF_NOWAIT
        return None


def _read_cached_into(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` from the page cache. False when that would need the disk (or EOF)."""
    n = _preadv_cached(fd, view, offset)
    if n is None:
        if _NoWait.enabled:
            return False  # not cached
        n = os.preadv(fd, [view], offset)  # cannot tell: read as before
    return n == len(view)


_probe = bytearray(1)


def _page_cached(fd: int, offset: int) -> bool:
    """Whether the byte at ``offset`` is in the page cache (a 1-byte RWF_NOWAIT read)."""
    if not _NoWait.enabled:
        return True  # cannot tell: behave as before (the read may block)
    try:
        return os.preadv(fd, [_probe], offset, _RWF_NOWAIT) >= 0
    except BlockingIOError:
        return False
    except OSError:
        return True  # let the real read report real errors


def window_cached(fd: int, offset: int, length: int) -> bool:
    """Whether ``length`` bytes at ``offset`` are (by their first and last page) cached.

    Readahead fills the cache in contiguous runs, so the two ends stand for the middle.
    """
    return _page_cached(fd, offset) and _page_cached(fd, offset + length - 1)


_PREFETCH_STEP = 1024 * 1024
_prefetch_buffers = threading.local()


def _read_into_cache(fd: int, offset: int, length: int) -> None:
    """Read a window through one small per-thread buffer, for the page cache's sake.

    The copies are of data the disk is slower to deliver than memory copies it; a 1 MiB
    buffer per worker thread keeps memory flat (one 8 MiB bytes object per cold window
    showed as RSS spikes under concurrent cold downloads).
    """
    buf = getattr(_prefetch_buffers, "buf", None)
    if buf is None:
        buf = _prefetch_buffers.buf = bytearray(_PREFETCH_STEP)
    view = memoryview(buf)
    end = offset + length
    while offset < end:
        n = os.preadv(fd, [view[: min(_PREFETCH_STEP, end - offset)]], offset)
        if n <= 0:
            return  # EOF: the file shrank; the send itself will notice
        offset += n


_prefetch_in_thread = _aio_wrap(_read_into_cache)


async def prefetch(fd: int, offset: int, length: int) -> None:
    """Bring a window into the page cache from a worker thread (aiofiles' pool), so the
    sendfile that follows does not block the event loop on the disk."""
    await _prefetch_in_thread(fd, offset, length)


def read_cached_bytes(fd: int, length: int) -> bytes | None:
    """The first ``length`` bytes of a file if they are all in the page cache, else None."""
    buf = bytearray(length)
    try:
        if length and not _read_cached_into(fd, memoryview(buf), 0):
            return None
    except OSError:
        return None
    return bytes(buf)


def render_inline(plan: ResponsePlan, fd: int | None) -> bytearray | None:
    """Head and whole body in one buffer, or None when a read would block or came short.

    None sends the caller to the async buffered path, which reads off the loop thread and
    deals with a file that shrank.
    """
    buf = bytearray(len(plan.head) + plan.body_length)
    view = memoryview(buf)
    pos = len(plan.head)
    view[:pos] = plan.head
    with view:
        for seg in plan.segments:
            if isinstance(seg, FileWindow):
                end = pos + seg.length
                assert fd is not None
                if not _read_cached_into(fd, view[pos:end], seg.offset):
                    return None
                pos = end
            else:
                end = pos + len(seg)
                view[pos:end] = seg
                pos = end
    return buf


# --- buffered ----------------------------------------------------------------------------


async def _read_chunk(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes at ``offset``: on the loop thread when cached, else in a thread."""
    buf = bytearray(length)  # a fresh buffer each time: safe to leave queued in the transport
    n = _preadv_cached(fd, buf, offset)
    if n == length:
        return buf
    if n:
        return buf[:n]
    return await _pread_in_thread(fd, length, offset)


async def send_buffered(conn: HttpProtocol, plan: ResponsePlan, fd: int | None) -> int:
    """Write the head and body through the transport, respecting flow control."""
    transport = conn.transport
    assert transport is not None
    if transport.is_closing():
        raise SendAborted("connection closed")
    transport.write(plan.head)
    sent = 0
    for seg in plan.segments:
        if isinstance(seg, FileWindow):
            assert fd is not None
            sent += await _send_window_buffered(conn, fd, seg.offset, seg.length)
        else:
            transport.write(seg)
            sent += len(seg)
        if conn.write_paused:
            await conn.wait_writable()
    return sent


async def _send_window_buffered(conn: HttpProtocol, fd: int, offset: int, length: int) -> int:
    transport = conn.transport
    assert transport is not None
    remaining = length
    pacer = conn.pacer
    while remaining:
        want = min(remaining, BUFFERED_CHUNK)
        if pacer is not None:
            want = pacer.cap(want)
        try:
            chunk = await _read_chunk(fd, want, offset)
        except OSError as exc:
            raise SendAborted(f"read failed: {exc.strerror}") from exc
        if not chunk:
            raise FileShrank("file ended before Content-Length")
        if conn.closed:
            raise SendAborted("connection closed")
        transport.write(chunk)
        n = len(chunk)
        offset += n
        remaining -= n
        conn.count_bytes("buffered", n)
        if conn.write_paused:
            await conn.wait_writable()
        if pacer is not None:
            await pacer.sent_bytes(n)
    return length


# --- sendfile on a dup of the socket (any loop; the uvloop path) --------------------------


def _cork(sock: socket.socket, on: bool) -> bool:
    """TCP_CORK on or off; False where it does not apply (not TCP, or gone).

    Corked for a sendfile body, the kernel sends only full segments: measured against
    TCP_NODELAY alone, 1 GiB over loopback went from 1,425 to 2,141 MB/s and from 0.74 to
    0.49 s of server core per GiB (nginx, same run: 2,077 MB/s, 0.51 s; it corks too,
    with tcp_nopush).
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
    except OSError:
        return False
    return True


class _DupSocket:
    """A dup of the connection's socket, for direct send/sendfile, with writability waits.

    Sending on the dup is safe only while the transport's own buffer is empty and reading
    is paused; the caller guarantees both. The dup is what sendfile writes to: the
    transport's fd number could be reused by another accept() once the transport closes.
    """

    __slots__ = ("_corked", "_fut", "_loop", "fd", "sock")

    def __init__(self, conn: HttpProtocol) -> None:
        self._loop = conn.loop
        self.fd = os.dup(conn.sock_fd)
        # Family and type given explicitly: otherwise socket() probes the fd with syscalls.
        self.sock = socket.socket(conn.sock_family, socket.SOCK_STREAM, 0, fileno=self.fd)
        self._fut: asyncio.Future[None] | None = None
        self._corked = _cork(self.sock, True)

    def _on_writable(self) -> None:
        # Level-triggered: unregister on every wake, or the callback fires in a tight loop.
        self._loop.remove_writer(self.fd)
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def writable(self) -> None:
        fut = self._loop.create_future()
        self._fut = fut
        self._loop.add_writer(self.fd, self._on_writable)
        try:
            await fut
        finally:
            self._fut = None
            if not fut.done() or fut.cancelled():
                self._loop.remove_writer(self.fd)  # woken by cancellation, not by epoll

    async def send_all(self, data: bytes, more: bool) -> None:
        """All of ``data``; MSG_MORE lets a head share a segment with the body after it."""
        flags = socket.MSG_MORE if more else 0
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view, flags)
            except BlockingIOError:
                await self.writable()
                continue
            view = view[n:]

    def close(self) -> None:
        # remove_writer before close: a closed, still-registered fd keeps a live epoll entry.
        self._loop.remove_writer(self.fd)
        if self._corked:
            _cork(self.sock, False)  # pushes out the last partial segment
        self.sock.close()


async def send_sendfile(conn: HttpProtocol, plan: ResponsePlan, fd: int | None) -> int:
    """Zero-copy: head with MSG_MORE, then os.sendfile windows, all on a dup of the socket."""
    if conn.transport is not None and conn.transport.get_write_buffer_size():
        # Bytes of an earlier response still queued: ours must not overtake them.
        await conn.wait_drained()
    try:
        dup = _DupSocket(conn)
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        conn.note_fallback()  # no descriptor to spare for the dup: this one goes buffered
        return await send_buffered(conn, plan, fd)
    try:
        segments = plan.segments
        await dup.send_all(plan.head, more=bool(segments))
        sent = 0
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            if isinstance(seg, FileWindow):
                assert fd is not None
                sent += await _sendfile_window(conn, dup, fd, seg.offset, seg.length)
            else:
                await dup.send_all(seg, more=i < last)
                sent += len(seg)
        return sent
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
        raise SendAborted("client went away") from exc
    finally:
        dup.close()


async def _sendfile_window(
    conn: HttpProtocol, dup: _DupSocket, fd: int, offset: int, length: int
) -> int:
    remaining = length
    since_yield = 0
    checked_until = offset
    pacer = conn.pacer
    while remaining:
        count = min(remaining, SENDFILE_MAX_CHUNK)
        if pacer is not None:
            count = pacer.cap(count)
        if offset >= checked_until:
            span = min(remaining, CACHE_CHECK_BYTES)
            if not window_cached(fd, offset, span):
                await prefetch(fd, offset, span)
            checked_until = offset + span
        count = min(count, checked_until - offset)
        try:
            n = os.sendfile(dup.fd, fd, offset, count)
        except BlockingIOError:
            await dup.writable()
            since_yield = 0
            continue
        except OSError as exc:
            if exc.errno in _SENDFILE_UNSUPPORTED:
                # This file cannot be sendfile'd (e.g. some FUSE or /proc files): the rest of
                # the window goes through the buffered path, in order, on the same socket.
                conn.note_fallback()
                return (length - remaining) + await _send_window_buffered(
                    conn, fd, offset, remaining
                )
            if isinstance(exc, ConnectionError):
                raise
            raise SendAborted(f"sendfile failed: {exc.strerror}") from exc
        if n == 0:
            # Still owing bytes but the file has none: it shrank. The promised length can
            # no longer be met; the connection must close (RFC 9112 §6.3 framing).
            raise FileShrank("file ended before Content-Length")
        offset += n
        remaining -= n
        since_yield += n
        conn.count_bytes("sendfile", n)
        if pacer is not None:
            await pacer.sent_bytes(n)
        if remaining and (n < count or since_yield >= YIELD_EVERY_BYTES):
            # A short write means the socket buffer is full: wait instead of asking again.
            await dup.writable()
            since_yield = 0
    return length


# --- the stdlib loop's own sendfile -----------------------------------------------------

# TCP states in which we may still send (linux/tcp_states.h): ESTABLISHED, CLOSE_WAIT.
_TCP_SENDABLE_STATES = frozenset({1, 8})


def _tcp_alive(transport: asyncio.BaseTransport) -> bool:
    """False when the kernel says the TCP connection can no longer carry our bytes."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except (OSError, AttributeError):
        return True  # no TCP_INFO here: assume alive, as before the probe
    return info[0] in _TCP_SENDABLE_STATES


async def send_loop_sendfile(conn: HttpProtocol, plan: ResponsePlan, fd: int | None) -> int:
    """Head through the transport, file windows with ``loop.sendfile(transport, ...)``."""
    transport = conn.transport
    assert transport is not None
    if transport.is_closing():
        raise SendAborted("connection closed")
    sock = transport.get_extra_info("socket")
    corked = sock is not None and _cork(sock, True)
    transport.write(plan.head)
    sent = 0
    file = open(fd, "rb", buffering=0, closefd=False) if fd is not None else None  # noqa: SIM115
    try:
        for seg in plan.segments:
            if isinstance(seg, FileWindow):
                assert file is not None and fd is not None
                sent += await _loop_sendfile_window(conn, file, fd, seg.offset, seg.length)
            else:
                transport.write(seg)
                sent += len(seg)
    finally:
        if file is not None:
            file.close()
        if corked and not transport.is_closing():
            _cork(sock, False)
    return sent


async def _loop_sendfile_window(conn: HttpProtocol, file, fd: int, offset: int, length: int) -> int:
    """One window with loop.sendfile, a cached stretch at a time (see CACHE_CHECK_BYTES)."""
    sent = 0
    pacer = conn.pacer
    while sent < length:
        span = min(length - sent, CACHE_CHECK_BYTES)
        if pacer is not None:
            span = pacer.cap(span)
        if not window_cached(fd, offset + sent, span):
            await prefetch(fd, offset + sent, span)
        n = await _loop_sendfile_span(conn, file, fd, offset + sent, span)
        sent += n
        if pacer is not None:
            await pacer.sent_bytes(n)
    return sent


async def _loop_sendfile_span(conn: HttpProtocol, file, fd: int, offset: int, length: int) -> int:
    transport = conn.transport
    assert transport is not None
    try:
        n = await conn.loop.sendfile(transport, file, offset, length, fallback=False)
    except asyncio.SendfileNotAvailableError as exc:
        # Raised when the first os.sendfile fails, whatever the errno: the file cannot be
        # sent this way, or the client already left. Fall back only when the connection
        # lives, else the fallback's writes go to a dead transport.
        if conn.closed or transport.is_closing() or not _tcp_alive(transport):
            raise SendAborted("client went away") from exc
        conn.note_fallback()
        return await _send_window_buffered(conn, fd, offset, length)
    except (ConnectionError, OSError) as exc:
        raise SendAborted(f"sendfile failed: {exc}") from exc
    except RuntimeError as exc:
        if not transport.is_closing():
            raise
        raise SendAborted("client went away") from exc  # "Transport is closing"
    conn.count_bytes("loop.sendfile", n)
    if n < length:
        raise FileShrank("file ended before Content-Length")
    return n


Sender = Callable[["HttpProtocol", ResponsePlan, "int | None"], Awaitable[int]]

SENDERS: dict[str, Sender] = {
    "sendfile": send_sendfile,
    "loop.sendfile": send_loop_sendfile,
    "buffered": send_buffered,
}
