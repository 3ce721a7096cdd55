"""Scanning a directory for its listing (``--autoindex``): blocking, run in a worker thread.

A listing names only what the server would serve: the directory is opened once and must
lie inside the root (``Root.contains``); it is then listed through that descriptor, so a
symlink swapped in after the lookup's check cannot redirect the listing. Dotfiles are left
out unless allowed; a symlink is listed only when its real target lies inside the root
(``Root.contains``, the same rule the lookup applies); FIFOs, sockets and devices are left
out, and so are names no request can reach (not UTF-8, or holding a backslash, which
``http/paths.py`` reads as a separator).
"""

from __future__ import annotations

import errno
import heapq
import os
import stat
from collections.abc import Callable, Iterator

from ..http.listing import MAX_ENTRIES, Entry, Listing, name_key
from .root import Root, real_path, resolve_at

# O_NONBLOCK and O_NOCTTY as in lookup.py: whatever sits at the path, opening cannot block.
_DIR_FLAGS = (
    os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
)


def _reachable(name: str) -> bool:
    """A request can name it: UTF-8 (no surrogate escapes) and no backslash (a separator)."""
    if "\\" in name:
        return False
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _default_order(entry: Entry) -> tuple[bool, tuple[str, str]]:
    """Directories first, then by name: ``sort_entries(..., "name", "asc")``'s order."""
    return not entry.is_dir, name_key(entry.name)


# known(path, stat) -> a file's sha256 (hex) if known already, else None.
Known = Callable[[str, os.stat_result], "str | None"]


def scan_directory(
    dir_path: str, root: Root, max_entries: int = MAX_ENTRIES, known: Known | None = None
) -> Listing:
    """Blocking: list a directory (the caller runs it in a worker thread).

    The cap keeps the first ``max_entries`` of the default order, so the same ones every
    time, and is applied while scanning (a bounded heap): a directory of a million
    entries costs the memory of ``max_entries``, not of a million.

    Raises OSError as ``os.open`` does; FileNotFoundError when the directory itself lies
    outside the root (or, with dotfiles denied, under a dot-directory): answer 404.
    """
    fd = os.open(dir_path, _DIR_FLAGS)
    try:
        dir_real = real_path(fd, dir_path)
        if not root.contains(dir_real):
            raise FileNotFoundError(errno.ENOENT, "directory outside the served root", dir_path)
        counted = [0]
        entries = _entries(fd, dir_real.rstrip("/") + "/", root, counted, known)
        kept = heapq.nsmallest(max(0, max_entries), entries, key=_default_order)
        for _ in entries:
            pass  # nsmallest(0, ...) reads nothing: every entry is counted all the same
    finally:
        os.close(fd)
    total = counted[0]
    return Listing(tuple(kept), total > len(kept), total)


def _entries(
    fd: int, dir_slash: str, root: Root, counted: list[int], known: Known | None
) -> Iterator[Entry]:
    """The entries a listing may name, one at a time; ``counted[0]`` counts them."""
    allow_dotfiles = root.allow_dotfiles
    with os.scandir(fd) as it:
        for de in it:
            name = de.name
            if (name.startswith(".") and not allow_dotfiles) or not _reachable(name):
                continue
            try:
                if de.is_symlink():
                    real, st = resolve_at(fd, name, dir_slash)
                    if not root.contains(real):
                        continue
                else:
                    st = de.stat(follow_symlinks=False)
            except OSError:
                continue  # deleted meanwhile, a symlink loop, no permission
            if stat.S_ISDIR(st.st_mode):
                counted[0] += 1
                yield Entry(name, True, 0, st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                counted[0] += 1
                digest = known(dir_slash + name, st) if known is not None else None
                yield Entry(name, False, st.st_size, st.st_mtime, digest)


# --- a whole tree, for archives --------------------------------------------------------------


class TreeTooLarge(Exception):
    """More files or bytes than the archive limits allow."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def walk_tree(
    dir_path: str, root: Root, max_files: int, max_bytes: int
) -> list[tuple[str, os.stat_result, str]]:
    """Blocking: every directory and regular file under ``dir_path`` as (relative name,
    stat, real path), by the listing's rules (dotfiles, containment, reachable names),
    sorted by name; directories' names end with "/". A symlinked directory is entered
    once (no loops). Raises TreeTooLarge, or OSError as ``os.open`` does."""
    found: list[tuple[str, os.stat_result, str]] = []
    seen: set[tuple[int, int]] = set()
    files = 0
    total = 0

    def walk(path: str, prefix: str) -> None:
        nonlocal files, total
        fd = os.open(path, _DIR_FLAGS)
        try:
            real = real_path(fd, path)
            st = os.fstat(fd)
            if not root.contains(real) or (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            slash = real.rstrip("/") + "/"
            children = []
            with os.scandir(fd) as it:
                for de in it:
                    name = de.name
                    if (name.startswith(".") and not root.allow_dotfiles) or not _reachable(name):
                        continue
                    try:
                        if de.is_symlink():
                            target, cst = resolve_at(fd, name, slash)
                            if not root.contains(target):
                                continue
                        else:
                            target, cst = slash + name, de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(cst.st_mode) or stat.S_ISREG(cst.st_mode):
                        children.append((name, cst, target))
        finally:
            os.close(fd)
        for name, cst, target in sorted(children):
            rel = prefix + name
            if stat.S_ISDIR(cst.st_mode):
                found.append((rel + "/", cst, target))
                walk(target, rel + "/")
            else:
                files += 1
                total += cst.st_size
                if files > max_files:
                    raise TreeTooLarge(f"more than {max_files} files")
                if total > max_bytes:
                    raise TreeTooLarge(f"more than {max_bytes} bytes")
                found.append((rel, cst, target))

    walk(dir_path, "")
    found.sort(key=lambda item: item[0])
    return found
