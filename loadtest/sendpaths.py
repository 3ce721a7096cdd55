"""Measure our three send paths side by side: 1 GiB downloads and small-file req/s.

    python -m loadtest.sendpaths [--runs 3] [--size-mib 1024] [--inline-sweep]

The server runs pinned to CPU 0, curl and wrk to CPU 1 (when there are 2+ cores).
CPU per GiB is the server core's busy time from /proc/stat (it includes the kernel's
network work done on that core, which the process's own CPU time misses) and, beside it,
the process's user+sys time from /proc/PID/stat.

The /proc accounting, machine description, file generation, taskset, server start/stop and
client wrappers are the harness's (loadtest/system.py, dataset.py, servers.py, clients.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .clients import curl_batch, run_wrk
from .dataset import make_file, warm
from .report import simple_table
from .servers import Running, ZeroCopy
from .system import cpu_busy_seconds, machine, peak_rss_kib, process_cpu_seconds

PATHS = {
    "uvloop + sendfile": ["--loop", "uvloop"],
    "asyncio + loop.sendfile": ["--loop", "asyncio"],
    "uvloop + buffered": ["--loop", "uvloop", "--no-sendfile"],
}
LOGS = Path(tempfile.gettempdir()) / "zc-sendpaths-logs"


def start(root: Path, args: list[str], cpu: int | None) -> Running:
    return ZeroCopy("sendpaths", "zerocopy", args).start(root, LOGS, cpu)


def download(running: Running, name: str, cpu: int | None) -> float:
    """One curl download to /dev/null; bytes per second."""
    batch = curl_batch(running.url(name), 1, cpu, timeout=300)
    if batch.codes != [200]:
        raise RuntimeError(f"download of {name} failed: status {batch.codes[0]}")
    return batch.bytes_per_s


def wrk(running: Running, name: str, cpu: int | None, seconds: int = 5) -> float:
    return run_wrk(running.url(name), seconds, 50, cpu=cpu).rps


def measure_large(
    root: Path, name: str, size: int, runs: int, scpu: int | None, ccpu: int | None
) -> list[dict]:
    rows = []
    for label, args in PATHS.items():
        speeds, core, proc_cpu = [], [], []
        srv = start(root, args, scpu)
        try:
            download(srv, name, ccpu)  # warm-up
            for _ in range(runs):
                c0 = cpu_busy_seconds(scpu) if scpu is not None else 0.0
                p0 = process_cpu_seconds(srv.pid)
                speeds.append(download(srv, name, ccpu))
                core.append(cpu_busy_seconds(scpu) - c0 if scpu is not None else float("nan"))
                proc_cpu.append(process_cpu_seconds(srv.pid) - p0)
            rss = peak_rss_kib(srv.pid)
        finally:
            srv.stop()
        gib = size / 2**30
        rows.append(
            {
                "path": label,
                "MB/s": statistics.median(speeds) / 1e6,
                "core s/GiB": statistics.median(core) / gib,
                "process s/GiB": statistics.median(proc_cpu) / gib,
                "peak RSS MiB": rss / 1024,
            }
        )
        print(f"  {label}: {rows[-1]}", file=sys.stderr)
    return rows


def measure_inline_sweep(
    root: Path, scpu: int | None, ccpu: int | None, seconds: int
) -> list[dict]:
    """req/s for file sizes around the inline limit, inline vs sendfile, uvloop."""
    rows = []
    for kib in (4, 16, 32, 64, 128, 256):
        name = f"f{kib}k.bin"
        make_file(root / name, kib * 1024)
        row: dict = {"size KiB": kib}
        for label, extra in (
            ("inline", ["--inline-max", str(10**9)]),
            ("sendfile", ["--inline-max", "0"]),
            ("buffered", ["--inline-max", "0", "--no-sendfile"]),
        ):
            srv = start(root, ["--loop", "uvloop", *extra], scpu)
            try:
                wrk(srv, name, ccpu, 1)
                row[label] = wrk(srv, name, ccpu, seconds)
            finally:
                srv.stop()
        print(f"  {row}", file=sys.stderr)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--inline-sweep", action="store_true")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--dir", type=Path, default=None, help="data directory (default: a temp dir)")
    args = p.parse_args()
    pinned = (os.cpu_count() or 1) >= 2
    scpu, ccpu = (0, 1) if pinned else (None, None)
    root = (args.dir or Path(tempfile.mkdtemp(prefix="zc-sendpaths-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * 2**20
    name = f"big{args.size_mib}m.bin"
    make_file(root / name, size)
    warm(root / name)
    print(f"# {time.strftime('%Y-%m-%d')} on {machine()}, pinned={pinned}")
    print(f"\n{args.size_mib} MiB download with curl, median of {args.runs}:\n")
    print(simple_table(measure_large(root, name, size, args.runs, scpu, ccpu)))
    if args.inline_sweep:
        print(f"\nwrk -t1 -c50 {args.seconds}s, req/s by body size and path (uvloop):\n")
        print(simple_table(measure_inline_sweep(root, scpu, ccpu, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
