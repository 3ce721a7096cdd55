"""A bounded cache of what small-file responses need, revalidated by one stat per request.

A hit replaces parse, open, fstat, the /proc readlink check, pread and close, and all the
head formatting, by a dict lookup and one ``stat``: the per-request Python work is what
limits small-file speed (README "Performance").

Why a hit is safe. An entry is made only from a file the full lookup opened and checked
(inside the root, not hidden, regular), keyed by the raw request-target that led there.
Each hit stats the same name again and requires the same file: device, inode, size, mtime
and ctime. A name that now leads elsewhere (a swapped symlink, a replaced file) has
another inode and misses, and the full lookup runs; the only thing a hit can serve is the
very file that was checked, unchanged since it was read.
"""

from __future__ import annotations

import os

from .version import file_version

# Bounds: entries, and bytes held: keys, heads and bodies (bodies up to the inline limit),
# plus what an entry costs beyond them (the objects, the dict slot), so that many tiny
# entries with long keys cannot grow memory past the budget either.
MAX_ENTRIES = 4096
MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 400


class CachedFile:
    """A 200 for a whole small file, or made from one (a ``NAME.sha256`` of it): its head
    as ``head.serialize`` made it (without the connection tail), and the body.

    It holds while the file at ``path`` is the version it was made from, and, when
    ``absent`` is given, while nothing is at that path (a made file answers only where no
    real one exists)."""

    __slots__ = ("absent", "body", "head", "path", "version")

    def __init__(
        self, path: str, st: os.stat_result, head: bytes, body: bytes, absent: str | None = None
    ) -> None:
        self.path = os.fsencode(path)  # stat'ed on every hit: encoded once
        self.version = file_version(st)
        self.head = head
        self.body = body
        self.absent = os.fsencode(absent) if absent is not None else None

    def cost(self, key: bytes) -> int:
        """The bytes this entry holds under ``key``, as the budget counts them."""
        made = len(self.absent) if self.absent is not None else 0
        return len(key) + len(self.path) + made + len(self.head) + len(self.body) + ENTRY_OVERHEAD


class FileCache:
    """Key -> CachedFile, bounded in entries and bytes, every hit revalidated."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[bytes, CachedFile] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, target: bytes) -> CachedFile | None:
        entry = self._entries.get(target)
        if entry is None:
            self.misses += 1
            return None
        try:
            st = os.stat(entry.path)
        except OSError:
            self._drop(target)
            return None
        # The same version is the same inode (st_dev, st_ino), whose type cannot change:
        # still the regular file it was when cached.
        if file_version(st) != entry.version or (
            entry.absent is not None and os.access(entry.absent, os.F_OK)
        ):
            self._drop(target)
            return None
        self.hits += 1
        return entry

    def put(self, target: bytes, entry: CachedFile) -> None:
        size = entry.cost(target)
        if size > self.max_bytes:
            return
        self._drop(target)
        if len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes:
            # Simple and bounded: start over. A working set larger than the cache then
            # costs what no cache costs; a smaller one refills in one pass.
            self._entries.clear()
            self._bytes = 0
        self._entries[target] = entry
        self._bytes += size

    def _drop(self, target: bytes) -> None:
        entry = self._entries.pop(target, None)
        if entry is not None:
            self._bytes -= entry.cost(target)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
