"""Directory archives against a single file, side by side, and the first zip of a tree
against a later one.

    python -m loadtest.archives [--files 1000] [--file-mib 1] [--rounds 3] [--data DIR]

The server (uvloop + sendfile, one process) is pinned to CPU 0 and curl to CPU 1 on 2+
cores. In interleaved rounds it downloads ``?archive=tar`` of a tree of ``--files`` files
of ``--file-mib`` MiB and a single file of the same total size, and reports MB/s and
the server process's CPU seconds per GiB (median and range). Then, with the tree's kept
CRC-32s removed and a fresh server, the first ``?archive=zip`` (which computes every
member's CRC-32) against a second one (which finds them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .servers import ZeroCopy
from .system import machine, pin_self, process_cpu_seconds, taskset

GIB = 1024**3
MIB = 1024**2


def prepare(data: Path, files: int, file_mib: int) -> tuple[Path, Path]:
    tree, single = data / "tree", data / "single" / "one.bin"
    if not tree.is_dir() or len(list(tree.iterdir())) != files:
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        for i in range(files):
            (tree / f"part-{i:05d}.bin").write_bytes(os.urandom(file_mib * MIB))
    if not single.exists() or single.stat().st_size != files * file_mib * MIB:
        single.parent.mkdir(parents=True, exist_ok=True)
        with open(single, "wb") as f:
            for _ in range(files):
                f.write(os.urandom(file_mib * MIB))
    for path in [*tree.iterdir(), single]:  # warm the page cache, as loadtest does
        with open(path, "rb") as f:
            while f.read(16 * MIB):
                pass
    return tree, single


def download(url: str, cpu: int | None) -> tuple[float, int]:
    """(seconds, bytes) of one curl download to /dev/null."""
    cmd = [*taskset(cpu), "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", url]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return time.monotonic() - started, int(done.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.archives", description=__doc__)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--file-mib", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", type=Path, help="data directory to (re)use (default: a temp dir)")
    args = p.parse_args(argv)
    pinned = (os.cpu_count() or 1) >= 2
    server_cpu, client_cpu = (0, 1) if pinned else (None, None)
    if pinned:
        pin_self(client_cpu)
    work = Path(tempfile.mkdtemp(prefix="zc-archives-"))
    data = args.data or work / "data"
    try:
        tree, _single = prepare(data, args.files, args.file_mib)
        zc = ZeroCopy(
            "zc-archives", "zerocopy uvloop+sendfile", ["--loop", "uvloop", "--archives", "tar,zip"]
        )
        results: dict[str, list[tuple[float, float]]] = {"tar": [], "single": []}
        running = zc.start(data, work / "run", server_cpu)
        try:
            urls = {
                "tar": running.url("/tree/?archive=tar"),
                "single": running.url("/single/one.bin"),
            }
            for _ in range(args.rounds):
                for kind, url in urls.items():
                    cpu0 = process_cpu_seconds(running.pid)
                    seconds, nbytes = download(url, client_cpu)
                    cpu = process_cpu_seconds(running.pid) - cpu0
                    results[kind].append((nbytes / seconds / 1e6, cpu / (nbytes / GIB)))
        finally:
            running.stop()
        print(f"# archives ({machine()}, pinned={pinned})\n")
        size = args.files * args.file_mib
        what = f"{args.files} x {args.file_mib} MiB = {size} MiB"
        print(f"| download ({what}) | MB/s | server CPU s/GiB |")
        print("|---|---:|---:|")
        for kind, rows in results.items():
            mbs = [r[0] for r in rows]
            cpu = [r[1] for r in rows]
            label = "tar of the tree" if kind == "tar" else "one file of the same size"
            print(
                f"| {label} | {statistics.median(mbs):,.0f} ({min(mbs):,.0f}-{max(mbs):,.0f}) "
                f"| {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f}) |"
            )
        # The first zip computes every member's CRC-32; a second one finds them kept.
        for path in tree.iterdir():
            with contextlib.suppress(OSError):
                os.removexattr(path, "user.zerocopy.crc32")
        running = zc.start(data, work / "run2", server_cpu)
        try:
            url = running.url("/tree/?archive=zip")
            first, _ = download(url, client_cpu)
            later, _ = download(url, client_cpu)
        finally:
            running.stop()
        print(f"\nzip of the tree: first {first:.2f} s (computes {args.files} CRC-32s),", end=" ")
        print(f"later {later:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
