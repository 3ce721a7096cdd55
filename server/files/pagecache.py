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

from aiofiles.os import wrap as _aio_wrap

from .pools import io_pool

# errnos that mean "this kernel or file system cannot do that call" (sendfile, RWF_NOWAIT).
UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
def _own_pread(fd: int, length: int, offset: int) -> bytes:
    """``pread`` on a descriptor of the thread's own (closed after): the request's may
    be closed meanwhile (its send cancelled) and its number reused by another file."""
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


_pread_in_thread = _aio_wrap(_own_pread)


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
    try:
        while offset < end:
            n = os.preadv(fd, [view[: min(_PREFETCH_STEP, end - offset)]], offset)
            if n <= 0:
                return  # EOF: the file shrank; the send itself will notice
            offset += n
    finally:
        os.close(fd)  # the thread's own descriptor (see _own_pread)


_prefetch_in_thread = _aio_wrap(_read_into_cache)


async def prefetch(fd: int, offset: int, length: int) -> None:
    """Bring a window into the page cache from a worker thread (the I/O pool), so the
    sendfile that follows does not block the event loop on the disk."""
    await _prefetch_in_thread(os.dup(fd), offset, length, executor=io_pool())


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
    return await _pread_in_thread(os.dup(fd), length, offset, executor=io_pool())
