"""Reading file bytes without blocking the event loop: page-cache probes and prefetch.

A read of data that is not in the page cache waits for the disk, and on the loop thread
that wait stalls every connection. ``preadv(..., RWF_NOWAIT)`` answers EAGAIN instead of
waiting, which makes a cheap probe: cached data is read (or sent) on the loop thread in
microseconds, anything else is first brought in by a worker thread (``prefetch``).
Every sender and the small-file cache read through this module; nothing else calls
RWF_NOWAIT.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from aiofiles.os import wrap as _aio_wrap

from .pools import io_pool

T = TypeVar("T")

# errnos that mean "this kernel or file system cannot do that call" (sendfile, RWF_NOWAIT).
UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


class ThreadFd:
    """A dup of a request's descriptor for a worker thread's job, closed exactly once.

    The request's own descriptor may be closed while the job waits or runs (its send was
    cancelled), and its number reused by another file: the job reads the dup instead. Who
    closes the dup depends on how far the job got, which only this object knows: the job
    if it started (when it is done with it), the loop if the job was cancelled unstarted
    (a cancelled executor future never runs, so it would never close it).
    """

    __slots__ = ("_closed", "_fd", "_in_use", "_lock")

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._lock = threading.Lock()
        self._in_use = False
        self._closed = False

    def claim(self) -> int:
        """In the job: the descriptor to read, or -1 if the request gave up already."""
        with self._lock:
            if self._closed:
                return -1
            self._in_use = True
            return self._fd

    def release(self) -> None:
        """In the job, when done with it."""
        with self._lock:
            self._in_use = False
            self._close()

    def abandon(self) -> None:
        """On the loop, when the request stops waiting: close now unless the job reads."""
        with self._lock:
            if not self._in_use:
                self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


async def _in_thread(fd: int, job: Callable[[int], T]) -> T | None:
    """``job(dup)`` in the I/O pool on a ``ThreadFd`` of ``fd``; None if cancelled first."""

    def run() -> T | None:
        own = handle.claim()
        if own < 0:
            return None
        try:
            return job(own)
        finally:
            handle.release()

    handle = ThreadFd(fd)
    try:
        return await _aio_wrap(run)(executor=io_pool())  # aiofiles: run_in_executor
    finally:
        handle.abandon()


class _NoWait:
    """Whether ``preadv(RWF_NOWAIT)`` works here; turned off at the first refusal."""

    enabled = _RWF_NOWAIT != 0


def preadv_cached(fd: int, buf: bytearray | memoryview, offset: int) -> int | None:
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
        if exc.errno not in UNSUPPORTED:
            raise
        _NoWait.enabled = False  # kernel or file system without RWF_NOWAIT
        return None


def read_cached_into(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` from the page cache. False when that would need the disk (or EOF)."""
    n = preadv_cached(fd, view, offset)
    if n is None:
        if _NoWait.enabled:
            return False  # not cached
        n = os.preadv(fd, [view], offset)  # cannot tell: read as before
    return n == len(view)


def read_cached_bytes(fd: int, length: int) -> bytes | None:
    """The first ``length`` bytes of a file if they are all in the page cache, else None."""
    buf = bytearray(length)
    try:
        if length and not read_cached_into(fd, memoryview(buf), 0):
            return None
    except OSError:
        return None
    return bytes(buf)


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


async def prefetch(fd: int, offset: int, length: int) -> None:
    """Bring a window into the page cache from a worker thread (the I/O pool), so the
    sendfile that follows does not block the event loop on the disk."""
    await _in_thread(fd, lambda own: _read_into_cache(own, offset, length))


async def ensure_cached(fd: int, offset: int, length: int) -> None:
    """Prefetch a window unless the page cache already holds it."""
    if not window_cached(fd, offset, length):
        await prefetch(fd, offset, length)


async def read_chunk(fd: int, length: int, offset: int) -> bytes | bytearray:
    """``length`` bytes at ``offset``: on the loop thread when cached, else in a thread.

    A fresh buffer each time: it is safe to leave queued in a transport.
    """
    buf = bytearray(length)
    n = preadv_cached(fd, buf, offset)
    if n == length:
        return buf
    if n:
        return buf[:n]
    data = await _in_thread(fd, lambda own: os.pread(own, length, offset))
    assert data is not None  # the job runs unless this coroutine was cancelled
    return data
