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
import os
import stat

from ..http.listing import DEFAULT_SORT, MAX_ENTRIES, Entry, Listing, sort_entries
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


def scan_directory(dir_path: str, root: Root, max_entries: int = MAX_ENTRIES) -> Listing:
    """Blocking: list a directory (the caller runs it in a worker thread).

    Raises OSError as ``os.open`` does; FileNotFoundError when the directory itself lies
    outside the root (or, with dotfiles denied, under a dot-directory): answer 404.
    """
    allow_dotfiles = root.allow_dotfiles
    fd = os.open(dir_path, _DIR_FLAGS)
    try:
        dir_real = real_path(fd, dir_path)
        if not root.contains(dir_real):
            raise FileNotFoundError(errno.ENOENT, "directory outside the served root", dir_path)
        dir_slash = dir_real.rstrip("/") + "/"
        found: list[Entry] = []
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
                    found.append(Entry(name, True, 0, st.st_mtime))
                elif stat.S_ISREG(st.st_mode):
                    found.append(Entry(name, False, st.st_size, st.st_mtime))
    finally:
        os.close(fd)
    total = len(found)
    # The cap keeps the first entries of the default order, so the same ones every time.
    kept = sort_entries(found, *DEFAULT_SORT)[: max(0, max_entries)]
    return Listing(tuple(kept), total > len(kept), total)
