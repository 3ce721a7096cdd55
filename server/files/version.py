"""One identity for a version of a file's content, used by every cache of derived data.

Device, inode, size, mtime and ctime: a file rewritten in place changes mtime and ctime,
one replaced by another name changes the inode, and a touch that restores an old mtime
still moves ctime. The file cache (responses) and the digest cache (Repr-Digest) key by
this one function, so they can never disagree on whether a file changed.
"""

from __future__ import annotations

import os

FileVersion = tuple[int, int, int, int, int]


def file_version(st: os.stat_result) -> FileVersion:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
