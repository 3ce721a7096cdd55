"""Opening the file a normalized request path names, without leaving the served root.

A site root is not a sandbox: a symlink inside it can point anywhere. So the decision is
made on what was actually opened (``Root.holds``, the one containment rule; see
``root.py``). Checking the opened file, rather than resolving the name first and opening
it second, leaves no window for a symlink swap.

An ``OpenFile`` owns its descriptor: whoever holds it closes it with ``close()``, which
closes the descriptor exactly once however many times it is called.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from dataclasses import dataclass

from ..http.paths import RequestPath
from .root import Root, real_path

log = logging.getLogger("zerocopy.lookup")

INDEX_FILE = "index.html"

# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, freezing the
# event loop. O_NOCTTY: a terminal device inside the root must not become ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
_NOT_FOUND_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EISDIR}
)
_FORBIDDEN_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
_OUT_OF_FDS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


class OpenFile:
    """An open regular file and what was learnt opening it; the one owner of ``fd``."""

    __slots__ = ("fd", "name", "path", "stat")

    def __init__(self, fd: int, st: os.stat_result, name: str, path: str) -> None:
        self.fd = fd
        self.stat = st
        self.name = name  # the file's base name, for Content-Type
        self.path = path  # the name it was opened by (symlinks unresolved)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Close the descriptor; later calls do nothing (its number may be reused)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenFile({self.path!r}, fd={self.fd})"


@dataclass(frozen=True, slots=True)
class Refused:
    status: int  # 403, 404 or 500


@dataclass(frozen=True, slots=True)
class NeedsSlash:
    """A directory asked for without its trailing slash: redirect (301)."""


NEEDS_SLASH = NeedsSlash()


@dataclass(frozen=True, slots=True)
class Directory:
    """A directory without index.html, to be listed (--autoindex)."""

    path: str  # its real path, checked inside the root


NOT_FOUND = Refused(404)
FORBIDDEN = Refused(403)
SERVER_ERROR = Refused(500)
UNAVAILABLE = Refused(503)

_last_fd_warning = 0.0


def _status_for(exc: OSError) -> Refused:
    global _last_fd_warning
    if exc.errno in _NOT_FOUND_ERRNOS:
        return NOT_FOUND
    if exc.errno in _FORBIDDEN_ERRNOS:
        return FORBIDDEN
    if exc.errno in _OUT_OF_FDS_ERRNOS:
        # Temporary: tell the client to come back (503 + Retry-After), log once a second.
        now = time.monotonic()
        if now - _last_fd_warning >= 1.0:
            _last_fd_warning = now
            log.error("out of file descriptors opening files: answering 503")
        return UNAVAILABLE
    log.error("open failed: %s", exc)
    return SERVER_ERROR


class FileLookup:
    """Maps request paths to open regular files under one root."""

    def __init__(self, root: Root, autoindex: bool = False):
        self.root = root
        self._root_slash = root.slash
        self.allow_dotfiles = root.allow_dotfiles
        self.autoindex = autoindex

    def _open_checked(self, path: str) -> int | Refused:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            return _status_for(exc)
        if not self.root.holds(fd, path):
            os.close(fd)
            return NOT_FOUND
        return fd

    def open_variant(self, path: str, original: os.stat_result) -> OpenFile | None:
        """A precompressed variant (``path`` is the original's plus ``.br``/``.zst``/``.gz``):
        opened only if it passes the same checks, is a regular file and is not older than
        the original (a stale variant would serve yesterday's content)."""
        fd = self._open_checked(path)
        if isinstance(fd, Refused):
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns < original.st_mtime_ns:
            os.close(fd)
            return None
        return OpenFile(fd, st, os.path.basename(path), path)

    def directory(self, segments: tuple[str, ...]) -> str | None:
        """The real path of the directory ``segments`` names, checked inside the root (and
        not hidden, unless dotfiles are allowed), or None."""
        if not self.allow_dotfiles and any(s.startswith(".") for s in segments):
            return None
        path = self._root_slash + "/".join(segments) if segments else self.root.real
        fd = self._open_checked(path)
        if isinstance(fd, Refused):
            return None
        try:
            return real_path(fd, path) if stat.S_ISDIR(os.fstat(fd).st_mode) else None
        except OSError:
            return None
        finally:
            os.close(fd)

    def open(self, target: RequestPath) -> OpenFile | Refused | NeedsSlash | Directory:
        """Open what ``target`` names: a regular file, or a directory's index.html."""
        if target.hidden and not self.allow_dotfiles:
            return NOT_FOUND
        path = self._root_slash + "/".join(target.segments) if target.segments else self.root.real
        fd = self._open_checked(path)
        if isinstance(fd, Refused):
            return fd
        name = target.segments[-1] if target.segments else ""
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            return _status_for(exc)
        if not stat.S_ISDIR(st.st_mode) and target.trailing_slash:
            os.close(fd)
            return NOT_FOUND  # "file.txt/": a file is no directory (the kernel says ENOTDIR)
        if stat.S_ISDIR(st.st_mode):
            if not target.trailing_slash:
                os.close(fd)
                return NEEDS_SLASH
            real_dir = real_path(fd, path)
            os.close(fd)
            path = path.rstrip("/") + "/" + INDEX_FILE
            fd = self._open_checked(path)
            if isinstance(fd, Refused):
                # No index.html: listed with --autoindex, else not served.
                if self.autoindex and fd is NOT_FOUND:
                    return Directory(real_dir)
                return fd
            name = INDEX_FILE
            try:
                st = os.fstat(fd)
            except OSError as exc:
                os.close(fd)
                return _status_for(exc)
        if not stat.S_ISREG(st.st_mode):
            # FIFOs, devices, sockets: never a download (their "size" means nothing).
            os.close(fd)
            return FORBIDDEN
        return OpenFile(fd, st, name, path)
