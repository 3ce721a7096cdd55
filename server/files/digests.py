"""Repr-Digest (RFC 9530): SHA-256 of whole files, computed in the background, cached.

A digest is keyed by what identifies the file's content (``version.file_version``), so it
is computed once per version of a file. Computing one reads the whole file in the hash
pool (``pools.HashPool``: one low-priority thread, a bounded queue) on a descriptor of
its own. No response waits for it beyond a short bound: the handler sends a response
without Repr-Digest (RFC 9530 allows that) when the value is not ready, and a later one
carries it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import OrderedDict

from ..http.reprdigest import field_value
from .pools import HashPool
from .version import FileVersion, file_version

# The hashing thread reads this much per call into one buffer. Large reads matter: the
# thread takes the GIL back between calls, and each time it may hold up the event loop's
# thread for a switch interval (5 ms); 1 MiB calls made small requests wait ~300 ms while
# a 1 GiB file was hashed.
_READ = 16 * 1024 * 1024
MAX_ENTRIES = 100_000


def _hash_fd(fd: int, size: int) -> bytes:
    """SHA-256 of the first ``size`` bytes of a file, read with preadv (thread-safe)."""
    h = hashlib.sha256()
    buf = bytearray(min(_READ, max(size, 1)))
    view = memoryview(buf)
    offset = 0
    try:
        while offset < size:
            n = os.preadv(fd, [view[: min(len(buf), size - offset)]], offset)
            if n <= 0:
                break
            h.update(view[:n])  # releases the GIL for the hashing itself
            offset += n
    finally:
        view.release()
        os.close(fd)
    return h.digest()


class DigestCache:
    """Digests by file version, each computed at most once at a time, in the background."""

    def __init__(self, pool: HashPool | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.pool = pool if pool is not None else HashPool()
        self._done: OrderedDict[FileVersion, str] = OrderedDict()
        self._running: dict[FileVersion, asyncio.Future[bytes]] = {}

    def get(self, st: os.stat_result) -> str | None:
        return self._done.get(file_version(st))

    def put_bytes(self, st: os.stat_result, body: bytes) -> str:
        """Record the digest of content already in memory (small files)."""
        value = field_value(hashlib.sha256(body).digest())
        self._store(file_version(st), value)
        return value

    def start(self, fd: int, st: os.stat_result) -> asyncio.Future[bytes] | None:
        """The computation of this file version's digest, started in the hash pool unless
        it runs already; None when the pool's queue is full (a later request retries).

        It goes on whoever stops waiting for it: the next response then carries it.
        """
        key = file_version(st)
        running = self._running.get(key)
        if running is not None:
            return running
        # A descriptor of its own: the requester's may close (client gone) while the
        # thread still reads, and its number could then belong to another file.
        own = os.dup(fd)
        job = self.pool.submit(lambda: _hash_fd(own, st.st_size))
        if job is None:
            os.close(own)
            return None
        running = asyncio.wrap_future(job)
        self._running[key] = running

        def _finished(fut: asyncio.Future[bytes]) -> None:
            self._running.pop(key, None)
            if not fut.cancelled() and fut.exception() is None:
                self._store(key, field_value(fut.result()))

        running.add_done_callback(_finished)
        return running

    def _store(self, key: FileVersion, value: str) -> None:
        self._done[key] = value
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
