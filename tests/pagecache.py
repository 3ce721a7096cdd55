"""Making a test file cold: out of the page cache, and checked to be so.

``posix_fadvise(POSIX_FADV_DONTNEED)`` is advice: a page still referenced (just written
back, under readahead that an earlier RWF_NOWAIT miss started, or in a per-CPU LRU batch)
stays. Measured on this project's CI machine (ext4 on virtio): after write + fsync, 17 of
200 files were still cached after one DONTNEED, all gone within 8 tries 10 ms apart. A
test that needs a cold file therefore asks again until ``mincore`` sees no page resident,
a check that does not itself read the file in (a probe read would start readahead).

Even a cold file can answer a ``preadv(RWF_NOWAIT)``: the miss starts readahead before it
gives up, and a fast disk can finish that before the read looks again (seen here: 3 of 200
fresh, evicted 64 KiB files, under a concurrent write load; in one minute 27 of 327, two
files hitting 8 times in a row, in the next none). A test that needs the server to miss
retries its request on a freshly evicted file, a little later.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident_pages(fd: int) -> int:
    """How many pages of the file behind ``fd`` are in the page cache (as fincore(1))."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        if _libc.mincore(addr, size, vec) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return sum(b & 1 for b in vec)
    finally:
        _libc.munmap(addr, size)


def evict(path: Path, timeout: float = 5.0) -> bool:
    """Drop ``path`` from the page cache; True once no page of it is resident, False if
    some still are after ``timeout`` seconds (tmpfs, say, where nothing can be dropped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if resident_pages(fd) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    finally:
        os.close(fd)
