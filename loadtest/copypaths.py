"""The zero-copy experiment, measured: each way to copy a file, per GiB actually moved.

    python -m loadtest.copypaths [--size 1g] [--rounds 3] [--methods rw-4k,sendfile-loop,...]
                                 [--targets file,socket] [--dir DIR] [--json PATH] [--verify]

Methods (the destination is a regular file, or a loopback TCP socket to a discarding peer):

    rw-4k, rw-64k, rw-1m   read(2) into a preallocated bytearray (FileIO.readinto), then
                           write(2) of a memoryview of what was read, looping on partial writes
    mmap-write             mmap(2) the source, write(2) 1 MiB slices of the map, munmap(2)
    sendfile-loop          sendfile(2) with an explicit source offset until every byte moved
    sendfile-once          ONE sendfile(dst, src, 0, size) call, as the note's cp2 does: Linux
                           moves at most 0x7ffff000 bytes per call, whatever the size asked
    splice                 splice(2) file -> pipe (sized to 1 MiB with F_SETPIPE_SZ when the
                           kernel allows) -> destination, draining the pipe each time
    copy_file_range        copy_file_range(2) until done; file -> file only

Each measured copy runs in a freshly forked child pinned to CPU 0 (with 2+ CPUs); its
getrusage(RUSAGE_SELF) and perf_counter are read just before and just after the copy loop,
so the fork, opening the files, the connect and allocating the buffer or pipe are not counted.
The peer that discards socket bytes is a separate process pinned to CPU 1; it reports the
bytes it received back over a pipe. Syscalls are counted by the loops themselves (each os.*
call is one syscall), so the count is exact for the copying calls.

Rounds interleave: round 1 runs every method once, then round 2, and so on; the tables
give medians with [min-max] over the rounds. The source file (every 4 KiB page stamped with
its offset, the rest random) is made once and read once so the page cache is warm; file
destinations are new files in the same directory, verified and removed after each copy.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import mmap
import multiprocessing
import os
import platform
import random
import re
import resource
import select
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .dataset import warm
from .system import cpu_model

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
PAGE = 4096
# Linux caps one read/write/sendfile/splice/copy_file_range at MAX_RW_COUNT = INT_MAX & PAGE_MASK.
MAX_RW_COUNT = 0x7FFFF000
MMAP_CHUNK = MIB
PIPE_SIZE = MIB
TARGETS = ("file", "socket")
SEND_TIMEOUT_S = 120  # SO_SNDTIMEO of the copier's socket: a stuck peer fails the copy
PEER_IDLE_S = 600.0  # the peer exits after this long without a connection or a byte
PEER_MAX_CONNECTIONS = 100_000
SAMPLED_PAGES = 16  # pages compared at random offsets after each file -> file copy
DASH = "\u2013"  # the en dash of "[min-max]" ranges in the tables
_FORK = multiprocessing.get_context("fork")


# --- the copy methods ---------------------------------------------------------------------


@dataclass
class Copied:
    moved: int  # bytes the calls reported moved
    calls: int  # syscalls the loop made (read, write, mmap, munmap, sendfile, splice, ...)


@dataclass
class Kit:
    """What a method needs set up before the measured loop: a buffer, a reader, a pipe."""

    buf: memoryview | None = None
    reader: io.FileIO | None = None
    pipe: tuple[int, int] | None = None
    pipe_size: int = 0

    def close(self) -> None:
        if self.buf is not None:
            self.buf.release()
        if self.reader is not None:
            self.reader.close()  # closefd=False: the source stays open
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)


def _write_all(dst: int, view: memoryview) -> int:
    """write(2) until all of view is written; the number of calls."""
    calls = 0
    while view:  # each call writes at least one byte or raises: at most len(view) calls
        n = os.write(dst, view)
        calls += 1
        if n <= 0:
            raise OSError(f"write returned {n}")
        view = view[n:]
    return calls


def copy_readwrite(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """read(2) into the kit's buffer, write(2) it out; the buffer's length is the chunk."""
    assert kit.buf is not None and kit.reader is not None
    buf, reader, chunk = kit.buf, kit.reader, len(kit.buf)
    moved = calls = 0
    while moved < size:
        n = reader.readinto(buf[: min(chunk, size - moved)])
        calls += 1
        if not n:
            raise OSError(f"read returned {n} at offset {moved} of {size}")
        calls += _write_all(dst, buf[:n])
        moved += n
    return Copied(moved, calls)


def copy_mmap_write(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """mmap the source, write(2) it 1 MiB at a time from the map, munmap."""
    m = mmap.mmap(src, size, prot=mmap.PROT_READ)  # mmap(2); Python adds an fstat, a dup
    calls = 1
    view = memoryview(m)
    try:
        for off in range(0, size, MMAP_CHUNK):
            calls += _write_all(dst, view[off : off + MMAP_CHUNK])
    finally:
        view.release()
        m.close()  # munmap(2) (and close of the dup)
    return Copied(size, calls + 1)


def copy_sendfile_loop(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """sendfile(2) from an explicit offset, asking for everything left, until done."""
    moved = calls = 0
    while moved < size:  # each call moves at least one byte or raises
        n = os.sendfile(dst, src, moved, size - moved)
        calls += 1
        if n <= 0:
            raise OSError(f"sendfile returned {n} at offset {moved} of {size}")
        moved += n
    return Copied(moved, calls)


def copy_sendfile_once(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """One sendfile(dst, src, 0, size), as the note's cp2: whatever it moved, it moved."""
    return Copied(os.sendfile(dst, src, 0, size), 1)


def copy_splice(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """splice(2) file -> pipe (up to the pipe's size), then pipe -> destination until drained."""
    assert kit.pipe is not None
    r, w = kit.pipe
    moved = calls = 0
    while moved < size:
        n = os.splice(src, w, min(kit.pipe_size, size - moved), offset_src=moved)
        calls += 1
        if n <= 0:
            raise OSError(f"splice into the pipe returned {n} at offset {moved} of {size}")
        left = n
        while left:  # each call drains at least one byte or raises
            k = os.splice(r, dst, left)
            calls += 1
            if k <= 0:
                raise OSError(f"splice out of the pipe returned {k}")
            left -= k
        moved += n
    return Copied(moved, calls)


def copy_file_range(src: int, dst: int, size: int, kit: Kit) -> Copied:
    """copy_file_range(2) with explicit offsets, asking for everything left, until done."""
    moved = calls = 0
    while moved < size:
        n = os.copy_file_range(src, dst, size - moved, moved, moved)
        calls += 1
        if n <= 0:
            raise OSError(f"copy_file_range returned {n} at offset {moved} of {size}")
        moved += n
    return Copied(moved, calls)


CopyFn = Callable[[int, int, int, Kit], Copied]


@dataclass(frozen=True)
class Method:
    name: str
    copy: CopyFn
    buffer: int = 0  # read/write buffer size; 0: none
    pipe: bool = False
    file_only: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("rw-4k", copy_readwrite, buffer=4 * KIB),
        Method("rw-64k", copy_readwrite, buffer=64 * KIB),
        Method("rw-1m", copy_readwrite, buffer=MIB),
        Method("mmap-write", copy_mmap_write),
        Method("sendfile-loop", copy_sendfile_loop),
        Method("sendfile-once", copy_sendfile_once),
        Method("splice", copy_splice, pipe=True),
        Method("copy_file_range", copy_file_range, file_only=True),
    )
}


def make_pipe(size: int = PIPE_SIZE) -> tuple[int, int, int]:
    """A pipe (read end, write end) and its capacity: ``size`` if F_SETPIPE_SZ allows it."""
    r, w = os.pipe()
    try:
        capacity = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    except OSError:  # beyond /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE
        capacity = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    return r, w, capacity


def make_kit(method: Method, src: int) -> Kit:
    kit = Kit()
    if method.buffer:
        kit.buf = memoryview(bytearray(method.buffer))
        kit.reader = io.FileIO(src, "r", closefd=False)
    if method.pipe:
        r, w, kit.pipe_size = make_pipe()
        kit.pipe = (r, w)
    return kit


def copy(method: str, src: int, dst: int, size: int) -> Copied:
    """Copy ``size`` bytes of src to dst with a method, in this process (kit set up and closed)."""
    m = METHODS[method]
    kit = make_kit(m, src)
    try:
        return m.copy(src, dst, size, kit)
    finally:
        kit.close()


def expected_bytes(method: str, size: int) -> int:
    """What a method should move: everything, except one sendfile call (at most 0x7ffff000)."""
    return min(size, MAX_RW_COUNT) if method == "sendfile-once" else size


# --- the source file and the checks -------------------------------------------------------


def make_source(path: Path, size: int) -> bool:
    """Write ``size`` bytes unless the file already has that size; True when written.

    One random MiB repeated, each 4 KiB page stamped with its own offset, so the bytes are
    not zero and a misplaced page is caught by comparing a few sampled pages.
    """
    if path.exists() and path.stat().st_size == size:
        return False
    block = bytearray(os.urandom(MIB))
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        for off in range(0, size, MIB):
            for page in range(0, MIB, PAGE):
                struct.pack_into("<Q", block, page, off + page)
            f.write(memoryview(block)[: min(MIB, size - off)])
    tmp.replace(path)
    return True


def sample_offsets(moved: int, count: int = SAMPLED_PAGES, seed: int = 0) -> list[int]:
    """The first and last page of ``moved`` bytes and ``count`` random offsets between."""
    rng = random.Random(seed ^ moved)
    offsets = {0, max(0, moved - PAGE)}
    offsets.update(rng.randrange(moved) for _ in range(count))
    return sorted(offsets)


def check_file(source: Path, dest: Path, moved: int, full: bool = False) -> None:
    """The destination holds exactly the first ``moved`` bytes of the source, or raise."""
    got = dest.stat().st_size
    if got != moved:
        raise RuntimeError(f"{dest.name}: {got:,} bytes on disk, the copy reported {moved:,}")
    with open(source, "rb", buffering=0) as s, open(dest, "rb", buffering=0) as d:
        if full:
            for off in range(0, moved, 8 * MIB):
                n = min(8 * MIB, moved - off)
                if os.pread(s.fileno(), n, off) != os.pread(d.fileno(), n, off):
                    raise RuntimeError(f"{dest.name}: differs from the source in [{off}, +{n})")
            return
        for off in sample_offsets(moved):
            n = min(PAGE, moved - off)
            if os.pread(s.fileno(), n, off) != os.pread(d.fileno(), n, off):
                raise RuntimeError(f"{dest.name}: differs from the source at offset {off:,}")


# --- the discarding peer ------------------------------------------------------------------


def _sink(listener: socket.socket, ctl: Connection, cpu: int | None) -> None:
    """The peer process: accept, read and discard to EOF, report the byte count; repeat."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    view = memoryview(bytearray(MIB))
    for _ in range(PEER_MAX_CONNECTIONS):
        ready, _, _ = select.select([listener, ctl], [], [], PEER_IDLE_S)
        if not ready or ctl in ready:
            return  # told to stop, or idle too long
        conn, _ = listener.accept()
        total = 0
        with conn:
            conn.settimeout(PEER_IDLE_S)
            deadline = time.monotonic() + PEER_IDLE_S * 10
            try:
                while time.monotonic() < deadline:  # each recv waits PEER_IDLE_S at most
                    n = conn.recv_into(view)
                    if not n:
                        break
                    total += n
            except OSError:
                total = -1
        ctl.send(total)


class Peer:
    """A loopback TCP sink in its own process (pinned to ``cpu``) that reports bytes received."""

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu
        listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = listener.getsockname()[:2]
        self._ctl, child = _FORK.Pipe()
        self._proc = _FORK.Process(target=_sink, args=(listener, child, cpu), daemon=True)
        self._proc.start()
        child.close()
        listener.close()  # the peer holds its own copy

    def received(self, timeout: float = 60.0) -> int:
        """The byte count of the next connection that ended (-1 if it failed)."""
        if not self._ctl.poll(timeout):
            raise RuntimeError(f"the peer reported nothing within {timeout} s")
        return int(self._ctl.recv())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._ctl.send("stop")
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._ctl.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- one measured copy --------------------------------------------------------------------


@dataclass
class Sample:
    method: str
    target: str
    round: int
    size: int  # bytes asked for
    moved: int  # bytes the calls reported moved (verified against the destination)
    calls: int
    user_s: float
    sys_s: float
    wall_s: float
    nvcsw: int
    nivcsw: int
    minflt: int
    majflt: int
    pipe_size: int = 0
    received: int | None = None  # socket: what the peer counted


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address)  # blocking: no Python timeout on the fd
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT_S, 0))
    return sock


def copy_measured(
    method: str, target: str, source: Path, size: int, dest: Path | None, peer: tuple[str, int]
) -> Sample:
    """Open, set up, then copy between two getrusage/perf_counter readings (in this process)."""
    m = METHODS[method]
    src = os.open(source, os.O_RDONLY)
    sock: socket.socket | None = None
    try:
        if target == "file":
            assert dest is not None
            dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        else:
            sock = _connect(peer)
            dst = sock.fileno()
        kit = make_kit(m, src)
        try:
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            copied = m.copy(src, dst, size, kit)
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        finally:
            kit.close()
            if sock is not None:
                sock.shutdown(socket.SHUT_WR)
                sock.close()
            else:
                os.close(dst)
    finally:
        os.close(src)
    return Sample(
        method=method,
        target=target,
        round=0,
        size=size,
        moved=copied.moved,
        calls=copied.calls,
        user_s=r1.ru_utime - r0.ru_utime,
        sys_s=r1.ru_stime - r0.ru_stime,
        wall_s=t1 - t0,
        nvcsw=r1.ru_nvcsw - r0.ru_nvcsw,
        nivcsw=r1.ru_nivcsw - r0.ru_nivcsw,
        minflt=r1.ru_minflt - r0.ru_minflt,
        majflt=r1.ru_majflt - r0.ru_majflt,
        pipe_size=kit.pipe_size,
    )


def _copier(conn: Connection, *args: Any) -> None:
    """The forked child: one measured copy, its Sample (or the error) back over the pipe."""
    try:
        conn.send(("ok", copy_measured(*args)))
    except BaseException as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def copy_timeout(size: int) -> float:
    return 120.0 + 60.0 * size / GIB


def measure(
    method: str,
    target: str,
    source: Path,
    size: int,
    workdir: Path,
    peer: Peer | None = None,
    verify: bool = False,
) -> Sample:
    """One copy in a freshly forked child, then the check of what arrived; a verified Sample."""
    if target == "socket" and peer is None:
        raise ValueError("a socket target needs a Peer")
    dest = workdir / f"copypaths-dest-{method}.bin" if target == "file" else None
    address = peer.address if peer is not None else ("127.0.0.1", 0)
    parent, child = _FORK.Pipe(duplex=False)
    proc = _FORK.Process(
        target=_copier, args=(child, method, target, source, size, dest, address), daemon=True
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(copy_timeout(size)):
            raise RuntimeError(f"{method} -> {target}: no result within {copy_timeout(size)} s")
        status, payload = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        parent.close()
    try:
        if status != "ok":
            raise RuntimeError(f"{method} -> {target}: {payload}")
        sample: Sample = payload
        if target == "file":
            assert dest is not None
            check_file(source, dest, sample.moved, full=verify)
        else:
            assert peer is not None
            sample.received = peer.received()
            if sample.received != sample.moved:
                raise RuntimeError(
                    f"{method} -> socket: moved {sample.moved:,}, peer got {sample.received:,}"
                )
        if method != "sendfile-once" and sample.moved != size:
            raise RuntimeError(f"{method} -> {target}: moved {sample.moved:,} of {size:,}")
        return sample
    finally:
        if dest is not None:
            dest.unlink(missing_ok=True)


# --- the report ---------------------------------------------------------------------------


@dataclass
class Row:
    """One method and target over the rounds: each figure per GiB actually moved."""

    method: str
    target: str
    moved: list[int] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, s: Sample) -> None:
        gib = s.moved / GIB
        self.moved.append(s.moved)
        for key, value in (
            ("calls", s.calls),
            ("user", s.user_s),
            ("sys", s.sys_s),
            ("wall", s.wall_s),
            ("nvcsw", s.nvcsw),
            ("nivcsw", s.nivcsw),
            ("faults", s.minflt + s.majflt),
        ):
            self.figures.setdefault(key, []).append(value / gib)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "moved": self.moved,
            **{
                f"{k}_per_gib": {
                    "median": statistics.median(v),
                    "min": min(v),
                    "max": max(v),
                    "values": v,
                }
                for k, v in self.figures.items()
            },
        }


COLUMNS = [  # (figure, heading, decimals: None = counts)
    ("calls", "calls/GiB", None),
    ("user", "user s/GiB", 3),
    ("sys", "sys s/GiB", 3),
    ("wall", "wall s/GiB", 3),
    ("nvcsw", "vol. cs/GiB", None),
    ("nivcsw", "invol. cs/GiB", None),
    ("faults", "faults/GiB", None),
]


def fmt_range(values: Sequence[float], digits: int | None) -> str:
    """ "0.312 [0.305-0.320]" (with an en dash): the median and the range, or one value."""

    def one(v: float) -> str:
        if digits is not None:
            return f"{v:.{digits}f}"
        return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.1f}"

    med, lo, hi = one(statistics.median(values)), one(min(values)), one(max(values))
    return med if lo == hi else f"{med} [{lo}{DASH}{hi}]"


def table(rows: Sequence[Row], target: str, methods: Sequence[str]) -> str:
    head = ["method", "bytes moved", *(h for _, h, _ in COLUMNS)]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    by_method = {r.method: r for r in rows if r.target == target}
    for name in methods:
        row = by_method.get(name)
        if row is None:
            if target == "socket" and METHODS[name].file_only:
                cells = ["n/a (file only)"] + ["n/a"] * len(COLUMNS)
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            continue
        moved = sorted(set(row.moved))
        moved_cell = f"{moved[0]:,}" if len(moved) == 1 else f"{moved[0]:,}{DASH}{moved[-1]:,}"
        cells = [fmt_range(row.figures[k], d) for k, _, d in COLUMNS]
        out.append(f"| {name} | {moved_cell} | " + " | ".join(cells) + " |")
    return "\n".join(out)


LEGEND = """\
- user/sys s/GiB: getrusage(RUSAGE_SELF) of the copying process (a fresh fork, pinned to the
  copier CPU), read just before and after the copy loop, divided by the GiB actually moved;
  wall s/GiB: perf_counter around the same loop.
- calls/GiB: the syscalls the loop made (read, write, sendfile, splice, copy_file_range; mmap
  and munmap for mmap-write), counted by the loop: exact, since each os.* call is one syscall
  (checked with strace; Python's mmap object adds an fstat, an fcntl dup and a close per copy,
  not counted). rw-* read with FileIO.readinto (read(2)) into a preallocated bytearray and
  write a memoryview of it with os.write, looping on partial writes.
- vol./invol. cs/GiB: ru_nvcsw / ru_nivcsw, scheduler context switches (the process slept, or
  was preempted); not the user/kernel mode switches of each syscall (2 per call).
- faults/GiB: minor + major page faults (mmap-write faults the source map in).
- socket: a TCP connection over 127.0.0.1 to a peer process that reads and discards (on the
  peer CPU). Loopback delivers in softirq on the sending CPU, so the receiver's TCP processing
  largely counts in the copier's sys time; the peer's copy to user space does not.
- Medians over the rounds, [min\u2013max] when they differ."""


@dataclass(frozen=True)
class Config:
    size: int
    rounds: int
    methods: list[str]
    targets: list[str]
    workdir: Path
    source: Path
    verify: bool = False
    copier_cpu: int | None = None
    peer_cpu: int | None = None


def plan(methods: Sequence[str], targets: Sequence[str]) -> list[tuple[str, str]]:
    """The (method, target) pairs of one round, in order: file targets first."""
    return [
        (m, t) for t in targets for m in methods if not (t == "socket" and METHODS[m].file_only)
    ]


def run(cfg: Config, log: Callable[[str], None] = lambda _: None) -> list[Sample]:
    """Every round of every (method, target): round 1 runs each once, then round 2, ..."""
    samples: list[Sample] = []
    peer = Peer(cfg.peer_cpu) if "socket" in cfg.targets else None
    try:
        for rnd in range(1, cfg.rounds + 1):
            for method, target in plan(cfg.methods, cfg.targets):
                s = measure(method, target, cfg.source, cfg.size, cfg.workdir, peer, cfg.verify)
                s.round = rnd
                samples.append(s)
                log(
                    f"round {rnd} {method:>15} -> {target:<6} moved {s.moved:,} in "
                    f"{s.wall_s:.3f} s (user {s.user_s:.3f}, sys {s.sys_s:.3f}, {s.calls:,} calls)"
                )
    finally:
        if peer is not None:
            peer.close()
    return samples


def rows_of(samples: Sequence[Sample]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for s in samples:
        rows.setdefault((s.method, s.target), Row(s.method, s.target)).add(s)
    return list(rows.values())


def fs_type(path: Path) -> str:
    """The file system type holding ``path`` (longest matching mount point), or "?"."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def machine_line() -> str:
    u = os.uname()
    return (
        f"{cpu_model()}, {os.cpu_count() or 1} cores, {u.sysname} {u.release} ({u.machine}), "
        f"Python {platform.python_version()}"
    )


def report(cfg: Config, samples: Sequence[Sample]) -> str:
    rows = rows_of(samples)
    pins = (
        f"copier pinned to CPU {cfg.copier_cpu}, peer to CPU {cfg.peer_cpu}"
        if cfg.copier_cpu is not None
        else "not pinned (fewer than 2 CPUs)"
    )
    out = [
        f"# copypaths, {time.strftime('%Y-%m-%d %H:%M')}: {machine_line()}",
        "",
        f"Source: {cfg.size:,} bytes ({cfg.size / GIB:g} GiB), page cache warm, in "
        f"{cfg.workdir} ({fs_type(cfg.workdir)}); {cfg.rounds} interleaved round(s); {pins}.",
    ]
    pipes = sorted({s.pipe_size for s in samples if s.pipe_size})
    if pipes:
        out[-1] += f" splice pipe: {', '.join(f'{p:,}' for p in pipes)} bytes."
    titles = {
        "file": "file → file (a new regular file in the same directory)",
        "socket": "file → socket (loopback TCP to a discarding peer process)",
    }
    for target in cfg.targets:
        out += ["", f"### {titles[target]}", "", table(rows, target, cfg.methods)]
    once = [s for s in samples if s.method == "sendfile-once"]
    if once:
        moved = ", ".join(sorted({f"{s.target}: {s.moved:,}" for s in once}))
        out += [
            "",
            f"One sendfile call moves at most 0x7ffff000 = {MAX_RW_COUNT:,} bytes on Linux; "
            f"the single call of {cfg.size:,} bytes here moved {moved} bytes "
            f"(expected {expected_bytes('sendfile-once', cfg.size):,}).",
        ]
    out += ["", LEGEND]
    return "\n".join(out)


def to_json(cfg: Config, samples: Sequence[Sample]) -> dict[str, Any]:
    return {
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "max_rw_count": MAX_RW_COUNT,
        "samples": [asdict(s) for s in samples],
        "summary": [r.summary() for r in rows_of(samples)],
    }


# --- the command line ---------------------------------------------------------------------

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)
_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB}


def parse_size(text: str) -> int:
    """ "256m", "1g", "10G", "1.5GiB", "4096" -> bytes (binary units); ValueError otherwise."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(
            f"invalid size {text!r}: give bytes or a number with k, m, g or t "
            "(binary: 1g = 1 GiB), e.g. 256m, 1g, 10g"
        )
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be at least 1 byte")
    return size


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _list_arg(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            given = ", ".join(bad) or "(none given)"
            raise argparse.ArgumentTypeError(
                f"unknown {what} {given}; choose from {', '.join(choices)}"
            )
        return [c for c in choices if c in items]  # the canonical order

    return parse


def _rounds_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid rounds {text!r}: a whole number >= 1")
    return int(text)


def default_dir() -> Path:
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="zc-copypaths-", dir=base))


def pick_cpus() -> tuple[int | None, int | None]:
    """(copier CPU, peer CPU): CPUs 0 and 1 when both may be used, else no pinning."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return (0, 1) if {0, 1} <= set(allowed) else (allowed[0], allowed[1])


def space_needed(source: Path, size: int, targets: Sequence[str]) -> int:
    """Bytes to be written: the source unless present, one destination for file targets."""
    have = source.exists() and source.stat().st_size == size
    return (0 if have else size) + (size if "file" in targets else 0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.copypaths",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=_size_arg, default=GIB, help="source size (default 1g)")
    p.add_argument("--rounds", type=_rounds_arg, default=3, help="interleaved rounds (3)")
    p.add_argument(
        "--methods",
        type=_list_arg(list(METHODS), "method"),
        default=list(METHODS),
        help=f"comma-separated subset of: {', '.join(METHODS)}",
    )
    p.add_argument(
        "--targets", type=_list_arg(TARGETS, "target"), default=list(TARGETS), help="file,socket"
    )
    p.add_argument("--dir", type=Path, default=None, help="data directory (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    p.add_argument("--verify", action="store_true", help="compare whole files, not sampled pages")
    args = p.parse_args(argv)

    own_dir = args.dir is None
    workdir = (default_dir() if own_dir else args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"copypaths-src-{args.size}.bin"
    try:
        need = space_needed(source, args.size, args.targets) + 64 * MIB
        free = shutil.disk_usage(workdir).free
        if free < need:
            print(
                f"copypaths: error: not enough free space in {workdir}: need {need / GIB:.2f} GiB "
                f"(the source, plus one destination file for file targets), "
                f"have {free / GIB:.2f} GiB",
                file=sys.stderr,
            )
            return 1
        copier_cpu, peer_cpu = pick_cpus()
        if copier_cpu is not None:
            os.sched_setaffinity(0, {copier_cpu})  # forked copiers inherit it
        cfg = Config(
            size=args.size,
            rounds=args.rounds,
            methods=args.methods,
            targets=args.targets,
            workdir=workdir,
            source=source,
            verify=args.verify,
            copier_cpu=copier_cpu,
            peer_cpu=peer_cpu,
        )

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        t0 = time.monotonic()
        if make_source(source, args.size):
            log(f"wrote {source} in {time.monotonic() - t0:.1f} s")
        warm(source)
        samples = run(cfg, log)
        print(report(cfg, samples))
        if args.json is not None:
            args.json.write_text(json.dumps(to_json(cfg, samples), indent=2) + "\n")
        return 0
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
