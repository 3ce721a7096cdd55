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
import concurrent.futures
import contextlib
import hashlib
import os
import zlib
from collections import OrderedDict
from functools import partial

from ..http.reprdigest import field_value
from .pools import HashPool
from .version import FileVersion, file_version

# The hashing thread reads this much per call into one buffer. Large reads matter: the
# thread takes the GIL back between calls, and each time it may hold up the event loop's
# thread for a switch interval (5 ms); 1 MiB calls made small requests wait ~300 ms while
# a 1 GiB file was hashed.
_READ = 16 * 1024 * 1024
MAX_ENTRIES = 100_000


# The digest is kept with the file, in an extended attribute, keyed to the version it was
# computed from: restarts and --workers share it, and mv / cp -a carry it along.
XATTR = "user.zerocopy.sha256"


def _xattr_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def read_persisted(file: int | str, st: os.stat_result) -> bytes | None:
    """The digest kept in the extended attribute of ``file`` (an fd or a path), if it is
    this version's."""
    try:
        raw = os.getxattr(file, XATTR)
    except (OSError, AttributeError):
        return None  # none yet, no xattrs on this file system, or another platform
    key, _, hexdigest = raw.decode("ascii", "replace").rpartition(":")
    if key != _xattr_key(st) or len(hexdigest) != 64:
        return None  # stale (the file changed since): computed again, and rewritten
    try:
        return bytes.fromhex(hexdigest)
    except ValueError:
        return None


def persist(fd: int, st: os.stat_result, digest: bytes) -> None:
    """Keep ``digest`` with the file; silently not where that is refused (a read-only
    mount, a file system without user xattrs, a file we may not write)."""
    value = f"{_xattr_key(st)}:{digest.hex()}".encode("ascii")
    with contextlib.suppress(OSError, AttributeError):
        if os.getxattr(fd, XATTR) == value:
            return  # kept already: writing it again would only move the ctime
    with contextlib.suppress(OSError, AttributeError):
        os.setxattr(fd, XATTR, value)


def _check_unchanged(fd: int, st: os.stat_result) -> None:
    """Raise if the file was rewritten while it was read: its hash is of no version."""
    if file_version(os.fstat(fd))[1:4] != file_version(st)[1:4]:
        raise OSError("the file changed while it was hashed")


def _hash_fd(fd: int, st: os.stat_result) -> bytes:
    """SHA-256 of a file version (read with preadv, thread-safe), then kept with the file;
    closes ``fd``, the thread's own descriptor."""
    size = st.st_size
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
        _check_unchanged(fd, st)
        digest = h.digest()
        if offset == size:
            persist(fd, st, digest)
        return digest
    finally:
        view.release()
        os.close(fd)


class DigestCache:
    """Digests by file version, each computed at most once at a time, in the background."""

    def __init__(self, pool: HashPool | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.pool = pool if pool is not None else HashPool()
        self._done: OrderedDict[FileVersion, bytes] = OrderedDict()
        self._running: dict[FileVersion, asyncio.Future[bytes]] = {}

    def known(self, fd: int, st: os.stat_result) -> bytes | None:
        """This version's digest if known: in memory, or kept with the file (then
        remembered). Never computes."""
        key = file_version(st)
        digest = self._done.get(key)
        if digest is None:
            digest = read_persisted(fd, st)
            if digest is not None:
                self._store(key, digest)
        return digest

    def peek(self, path: str, st: os.stat_result) -> str | None:
        """Thread-safe, for listings: the hex digest if in memory or kept with the file
        named ``path`` (as this version's); never computes, never stores."""
        digest = self._done.get(file_version(st)) or read_persisted(path, st)
        return digest.hex() if digest is not None else None

    def get(self, fd: int, st: os.stat_result) -> str | None:
        """The Repr-Digest field value, if known."""
        digest = self.known(fd, st)
        return field_value(digest) if digest is not None else None

    def put_bytes(self, fd: int, st: os.stat_result, body: bytes) -> str:
        """Record (and keep with the file) the digest of content in memory (small files)."""
        digest = hashlib.sha256(body).digest()
        self._store(file_version(st), digest)
        persist(fd, st, digest)
        return field_value(digest)

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
        job = self.pool.submit(lambda: _hash_fd(own, st))
        if job is None:
            os.close(own)
            return None
        running = asyncio.wrap_future(job)
        self._running[key] = running

        def _finished(fut: asyncio.Future[bytes]) -> None:
            self._running.pop(key, None)
            if not fut.cancelled() and fut.exception() is None:
                self._store(key, fut.result())

        running.add_done_callback(_finished)
        return running

    def _store(self, key: FileVersion, value: bytes) -> None:
        self._done[key] = value
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)


# --- piece hashes (Metalink) -----------------------------------------------------------------


Pieces = tuple[bytes, list[bytes]]  # a file's SHA-256, and its pieces'


def _hash_pieces(fd: int, st: os.stat_result, length: int) -> tuple[Pieces, FileVersion]:
    """Blocking: the SHA-256 of a file and of each ``length``-byte piece of it, in one read,
    and the file's version once the digest is kept (writing the xattr moves its ctime);
    closes ``fd`` (the thread's own)."""
    whole = hashlib.sha256()
    pieces: list[bytes] = []
    piece = hashlib.sha256()
    in_piece = 0
    buf = bytearray(min(_READ, max(st.st_size, 1)))
    view = memoryview(buf)
    offset = 0
    try:
        while offset < st.st_size:
            n = os.preadv(fd, [view[: min(len(buf), st.st_size - offset)]], offset)
            if n <= 0:
                raise OSError(f"the file shrank at {offset}")
            done = 0
            while done < n:
                take = min(n - done, length - in_piece)
                chunk = view[done : done + take]
                whole.update(chunk)
                piece.update(chunk)
                in_piece += take
                done += take
                if in_piece == length:
                    pieces.append(piece.digest())
                    piece, in_piece = hashlib.sha256(), 0
            offset += n
        if in_piece:
            pieces.append(piece.digest())
        _check_unchanged(fd, st)
        digest = whole.digest()
        persist(fd, st, digest)
        return (digest, pieces), file_version(os.fstat(fd))
    finally:
        view.release()
        os.close(fd)


class PieceHashes:
    """A file version's SHA-256 and piece hashes (for .meta4), computed in the hash pool,
    remembered in memory (bounded); the whole-file digest also goes to the DigestCache."""

    def __init__(self, digests: DigestCache, max_entries: int = 256) -> None:
        self.digests = digests
        self.max_entries = max_entries
        self._done: OrderedDict[tuple[FileVersion, int], Pieces] = OrderedDict()
        self._running: dict[tuple[FileVersion, int], asyncio.Future[Pieces]] = {}

    def start(self, fd: int, st: os.stat_result, length: int) -> asyncio.Future[Pieces] | None:
        """The computation (or its result, done); None when the pool's queue is full."""
        key = (file_version(st), length)
        loop = asyncio.get_running_loop()
        done = self._done.get(key)
        if done is not None:
            ready: asyncio.Future[Pieces] = loop.create_future()
            ready.set_result(done)
            return ready
        running = self._running.get(key)
        if running is not None:
            return running
        own = os.dup(fd)
        job = self.digests.pool.submit(lambda: _hash_pieces(own, st, length))
        if job is None:
            os.close(own)
            return None
        result: asyncio.Future[Pieces] = loop.create_future()
        self._running[key] = result
        asyncio.wrap_future(job).add_done_callback(partial(self._finished, key, result))
        return result

    def _finished(
        self,
        key: tuple[FileVersion, int],
        result: asyncio.Future[Pieces],
        fut: asyncio.Future[tuple[Pieces, FileVersion]],
    ) -> None:
        self._running.pop(key, None)
        if fut.cancelled() or fut.exception() is not None:
            if not result.done():
                result.set_exception(fut.exception() or OSError("hashing was cancelled"))
                result.exception()  # retrieved: a waiter that timed out is no error to log
            return
        pieces, after = fut.result()
        # Known under the version it was read as, and the one its kept digest left.
        self._done[key] = self._done[(after, key[1])] = pieces
        self.digests._store(key[0], pieces[0])
        self.digests._store(after, pieces[0])
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        if not result.done():
            result.set_result(pieces)


# --- CRC-32 of archive members (zip) --------------------------------------------------------

CRC_XATTR = "user.zerocopy.crc32"


class Busy(Exception):
    """The hash pool's queue is full: come back later."""


def _crc_batch(todo: list[tuple[str, os.stat_result, concurrent.futures.Future[int]]]) -> None:
    """Blocking, in the hash pool: the CRC-32 of each file (checked to be the version the
    snapshot saw), kept with the file, handed to its future."""
    buf = bytearray(_READ)
    view = memoryview(buf)
    for path, st, result in todo:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            result.set_exception(exc)
            continue
        try:
            now = os.fstat(fd)
            if file_version(now)[1:4] != file_version(st)[1:4]:
                raise OSError(f"{path} changed")
            crc = 0
            offset = 0
            while offset < st.st_size:
                n = os.preadv(fd, [view[: min(len(buf), st.st_size - offset)]], offset)
                if n <= 0:
                    raise OSError(f"{path} shrank")
                crc = zlib.crc32(view[:n], crc)
                offset += n
            with contextlib.suppress(OSError, AttributeError):
                os.setxattr(fd, CRC_XATTR, f"{_xattr_key(st)}:{crc:08x}".encode("ascii"))
            result.set_result(crc)
        except OSError as exc:
            result.set_exception(exc)
        finally:
            os.close(fd)
    view.release()


class Crc32Cache:
    """CRC-32s of files by version (for zip archives): memory, then the file's extended
    attribute, else computed in the hash pool, a whole tree's missing ones in one job."""

    def __init__(self, pool: HashPool, max_entries: int = MAX_ENTRIES) -> None:
        self.pool = pool
        self.max_entries = max_entries
        self._done: OrderedDict[FileVersion, int] = OrderedDict()
        self._running: dict[FileVersion, asyncio.Future[int]] = {}

    def known(self, path: str, st: os.stat_result) -> int | None:
        key = file_version(st)
        crc = self._done.get(key)
        if crc is None:
            try:
                raw = os.getxattr(path, CRC_XATTR).decode("ascii", "replace")
            except (OSError, AttributeError):
                return None
            stamp, _, value = raw.rpartition(":")
            if stamp != _xattr_key(st) or len(value) != 8:
                return None
            try:
                crc = int(value, 16)
            except ValueError:
                return None
            self._store(key, crc)
        return crc

    async def all_of(self, items: list[tuple[str, os.stat_result]]) -> list[int]:
        """The CRC-32 of each (path, stat); raises Busy, or OSError when a file changed.
        What is computed goes on (and is kept) if the caller stops waiting."""
        futures: list[asyncio.Future[int]] = []
        todo = []
        for path, st in items:
            crc = self.known(path, st)
            if crc is not None:
                done = asyncio.get_running_loop().create_future()
                done.set_result(crc)
                futures.append(done)
                continue
            key = file_version(st)
            running = self._running.get(key)
            if running is None:
                result: concurrent.futures.Future[int] = concurrent.futures.Future()
                running = asyncio.wrap_future(result)
                self._running[key] = running
                running.add_done_callback(partial(self._finished, key))
                todo.append((path, st, result))
            futures.append(running)
        if todo and self.pool.submit(partial(_crc_batch, todo)) is None:
            for _path, _st, result in todo:
                result.set_exception(Busy())
            raise Busy()
        return list(await asyncio.shield(asyncio.gather(*futures)))

    def _finished(self, key: FileVersion, fut: asyncio.Future[int]) -> None:
        self._running.pop(key, None)
        if not fut.cancelled() and fut.exception() is None:
            self._store(key, fut.result())

    def _store(self, key: FileVersion, crc: int) -> None:
        self._done[key] = crc
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
