"""Opening an archive's members at send time, each checked to be the file the snapshot
saw: the same inode, size and mtime, still a regular file. A member that changed since
aborts the response (its promised length and bytes no longer hold), as a file that
shrinks during a send does."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from ..http.multipart import MemberRef

_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


class MemberChanged(OSError):
    """An archive member is not what the snapshot saw any more."""


@contextlib.contextmanager
def opened_member(ref: MemberRef) -> Iterator[int]:
    """The member's descriptor, owned by this block (closed when it ends)."""
    try:
        fd = os.open(ref.path, _FLAGS)
    except OSError as exc:
        raise MemberChanged(f"{ref.path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_ino != ref.ino
            or st.st_size != ref.size
            or st.st_mtime_ns != ref.mtime_ns
        ):
            raise MemberChanged(f"{ref.path} changed since the archive was planned")
        yield fd
    finally:
        os.close(fd)
