"""Repr-Digest (RFC 9530): SHA-256 of whole files, computed off the event loop, cached.

A digest is keyed by what identifies the file's content (device, inode, size, mtime and
ctime), so it is computed once per version of a file. Computing one reads the whole file
in a worker thread on a descriptor of its own: the requests of others never wait, and
only requests that want this file's digest wait for it (once).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections import OrderedDict

# The hashing thread reads this much per call into one buffer. Large reads matter: the
# thread takes the GIL back between calls, and each time it may hold up the event loop's
# thread for a switch interval (5 ms); 1 MiB calls made small requests wait ~300 ms while
# a 1 GiB file was hashed.
_READ = 16 * 1024 * 1024
MAX_ENTRIES = 100_000

Key = tuple[int, int, int, int, int]


def digest_key(st: os.stat_result) -> Key:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def field_value(digest: bytes) -> str:
    """``sha-256=:BASE64:`` (RFC 9530 §2, a Structured Field dictionary member)."""
    return f"sha-256=:{base64.b64encode(digest).decode('ascii')}:"


def wants_sha256(want_repr_digest: str | None) -> bool:
    """Whether to send sha-256, honouring ``Want-Repr-Digest`` (RFC 9530 §4).

    Absent: yes (we were configured to). Present: only if it gives sha-256 a non-zero
    weight; a malformed header is ignored (as if absent).
    """
    if want_repr_digest is None:
        return True
    weights: dict[str, int] = {}
    for member in want_repr_digest.split(","):
        name, eq, value = member.strip().partition("=")
        if not eq:
            return True  # not a dictionary of integers: malformed, ignore the header
        value = value.strip()
        if not value.isascii() or not value.isdigit() or int(value) > 10:
            return True
        weights[name.strip().lower()] = int(value)
    return weights.get("sha-256", 0) > 0


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
    """Digests by file version, with at most one computation per version at a time."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._done: OrderedDict[Key, str] = OrderedDict()
        self._running: dict[Key, asyncio.Future[bytes]] = {}

    def get(self, st: os.stat_result) -> str | None:
        return self._done.get(digest_key(st))

    def put_bytes(self, st: os.stat_result, body: bytes) -> str:
        """Record the digest of content already in memory (small files)."""
        value = field_value(hashlib.sha256(body).digest())
        self._store(digest_key(st), value)
        return value

    async def compute(self, fd: int, st: os.stat_result) -> str:
        """The digest of the open file ``fd`` (not consumed), from a worker thread."""
        key = digest_key(st)
        done = self._done.get(key)
        if done is not None:
            return done
        running = self._running.get(key)
        if running is None:
            loop = asyncio.get_running_loop()
            # A descriptor of its own: the requester's may close (client gone) while the
            # thread still reads, and its number could then belong to another file.
            own = os.dup(fd)
            running = loop.run_in_executor(None, _hash_fd, own, st.st_size)
            self._running[key] = running

            def _finished(fut: asyncio.Future[bytes]) -> None:
                self._running.pop(key, None)
                if not fut.cancelled() and fut.exception() is None:
                    self._store(key, field_value(fut.result()))

            running.add_done_callback(_finished)
        return field_value(await asyncio.shield(running))

    def _store(self, key: Key, value: str) -> None:
        self._done[key] = value
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
