"""Worker threads, one pool per kind of blocking work, so that no feature starves another.

* ``io_pool()``: reads of pages not in the page cache (prefetch before sendfile, buffered
  reads) and directory listings (scan and render). Downloads and listings share it; both
  are short jobs that a client waits for.
* ``HashPool``: SHA-256 of whole files for Repr-Digest. Long jobs nobody waits for: one
  thread at the lowest CPU and I/O priority, a bounded queue, and a job refused (not
  queued) when the queue is full. Before, hashing ran on the loop's default executor with
  everything else: six HEADs of six 3 GiB files delayed a listing from 5 ms to 37.8 s.

The pools are made on first use: a server that never reads a cold page starts no thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger("zerocopy.files")
T = TypeVar("T")

IO_THREADS = 8  # cold reads are I/O-bound: a few more threads than cores keep disks busy
HASH_THREADS = 1
HASH_QUEUE = 64  # hash jobs waiting beyond this are refused (the digest comes later)

_io: ThreadPoolExecutor | None = None
_io_lock = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """The pool for cold reads and listings."""
    global _io
    if _io is None:
        with _io_lock:
            if _io is None:
                _io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="zc-io")
    return _io


# ioprio_set(2): IOPRIO_WHO_PROCESS with a thread id sets that thread's I/O class.
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314}.get(platform.machine())
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13


def lower_priority() -> None:
    """The calling thread at the lowest CPU priority (nice 19) and the idle I/O class,
    where the platform allows: it then only uses what nothing else wants."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, tid, 19)  # Linux: per thread
    if _SYS_IOPRIO_SET is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        value = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
        libc.syscall(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, tid, value)


class HashPool:
    """Bounded background jobs at low priority; ``submit`` refuses when full."""

    def __init__(self, threads: int = HASH_THREADS, queue: int = HASH_QUEUE) -> None:
        self.limit = threads + queue
        self._pending = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._threads = threads

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    def submit(self, fn: Callable[[], T]) -> Future[T] | None:
        """Run ``fn`` in the pool; None when the queue is full (try again later)."""
        with self._lock:
            if self._pending >= self.limit:
                return None
            self._pending += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._threads, thread_name_prefix="zc-hash", initializer=lower_priority
                )
        future = self._executor.submit(fn)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[T]) -> None:
        with self._lock:
            self._pending -= 1
