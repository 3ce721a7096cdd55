"""The served root, and the one rule for what lies inside it.

A site root is not a sandbox: a symlink inside it can point anywhere. So every decision
is made on what was actually opened: the kernel's own name for an open descriptor
(``/proc/self/fd/N``) must lie under the root's real path and, unless dotfiles are
allowed, must not pass through a dot-directory. The file lookup and the directory scan
both ask ``Root.contains``; nothing else decides it.
"""

from __future__ import annotations

import os

_HAVE_PROC_FD = os.path.isdir("/proc/self/fd")
_O_PATH = getattr(os, "O_PATH", 0)


class Root:
    """A served directory by its real path, with the dotfile rule that applies in it."""

    __slots__ = ("allow_dotfiles", "real", "slash")

    def __init__(self, path: str, allow_dotfiles: bool = False) -> None:
        self.real = os.path.realpath(path)
        self.slash = self.real.rstrip("/") + "/"
        self.allow_dotfiles = allow_dotfiles

    def contains(self, real: str) -> bool:
        """``real`` (a resolved path) is the root or under it, and not through a
        dot-directory unless those are allowed."""
        if real == self.real:
            return True
        if not real.startswith(self.slash):
            return False
        return self.allow_dotfiles or "/." not in real[len(self.slash) - 1 :]

    def holds(self, fd: int, path: str) -> bool:
        """Whether the file open as ``fd`` (opened by the name ``path``) lies inside."""
        return self.contains(real_path(fd, path))


def real_path(fd: int, path: str) -> str:
    """The kernel's name for the open ``fd``; ``realpath(path)`` where /proc is missing."""
    if _HAVE_PROC_FD:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(path)


def resolve_at(dir_fd: int, name: str, dir_slash: str) -> tuple[str, os.stat_result]:
    """(real path, stat) of what the symlink ``name`` in an open directory leads to;
    OSError when it is broken.

    With O_PATH the target is opened (not read: a FIFO cannot block) and both answers come
    from that one descriptor, 3-4 syscalls where realpath takes one per path component.
    """
    if not (_O_PATH and _HAVE_PROC_FD):
        real = os.path.realpath(dir_slash + name)
        return real, os.stat(real)
    fd = os.open(name, _O_PATH | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd)
    finally:
        os.close(fd)
