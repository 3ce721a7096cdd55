"""Measure our three send paths side by side: 1 GiB downloads and small-file req/s.

    python -m loadtest.sendpaths [--runs 3] [--size-mib 1024] [--inline-sweep]

The server runs pinned to CPU 0, curl and wrk to CPU 1 (when there are 2+ cores).
CPU per GiB is the server core's busy time from /proc/stat (it includes the kernel's
network work done on that core, which the process's own CPU time misses) and, beside it,
the process's user+sys time from /proc/PID/stat.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATHS = {
    "uvloop + sendfile": ["--loop", "uvloop"],
    "asyncio + loop.sendfile": ["--loop", "asyncio"],
    "uvloop + buffered": ["--loop", "uvloop", "--no-sendfile"],
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_busy_seconds(cpu: int) -> float:
    """Non-idle time of one CPU so far, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]  # idle + iowait
                return (sum(v[:8]) - idle) / CLK_TCK
    raise RuntimeError(f"cpu{cpu} not in /proc/stat")


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) if m else 0


def make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    block = os.urandom(16 * 1024 * 1024)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(8 * 1024 * 1024):
            pass


def taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


class Server:
    def __init__(self, root: Path, args: list[str], cpu: int | None) -> None:
        self.cmd = [
            *taskset(cpu),
            sys.executable,
            "-m",
            "server",
            "-b",
            "127.0.0.1",
            "-p",
            "0",
            "-d",
            str(root),
            "--access-log",
            "off",
            "--log-level",
            "warning",
            *args,
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r":(\d+)/$", line.strip())
        if not m:
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(m.group(1))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)


def download(port: int, name: str, cpu: int | None) -> float:
    """One curl download to /dev/null; bytes per second."""
    out = subprocess.run(
        [
            *taskset(cpu),
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download} %{size_download}",
            f"http://127.0.0.1:{port}/{name}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    return float(out[0])


def wrk(port: int, name: str, cpu: int | None, seconds: int = 5) -> float:
    out = subprocess.run(
        [*taskset(cpu), "wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/{name}"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def measure_large(root: Path, name: str, size: int, runs: int, scpu, ccpu) -> list[dict]:
    rows = []
    for label, args in PATHS.items():
        speeds, core, proc_cpu = [], [], []
        with Server(root, args, scpu) as srv:
            assert srv.proc is not None
            download(srv.port, name, ccpu)  # warm-up
            for _ in range(runs):
                c0 = cpu_busy_seconds(scpu) if scpu is not None else 0.0
                p0 = process_cpu_seconds(srv.proc.pid)
                speeds.append(download(srv.port, name, ccpu))
                core.append(cpu_busy_seconds(scpu) - c0 if scpu is not None else float("nan"))
                proc_cpu.append(process_cpu_seconds(srv.proc.pid) - p0)
            rss = peak_rss_kib(srv.proc.pid)
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


def measure_inline_sweep(root: Path, scpu, ccpu, seconds: int) -> list[dict]:
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
            with Server(root, ["--loop", "uvloop", *extra], scpu) as srv:
                wrk(srv.port, name, ccpu, 1)
                row[label] = wrk(srv.port, name, ccpu, seconds)
        print(f"  {row}", file=sys.stderr)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append(
            "| "
            + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )
    return "\n".join(out)


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


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
    root = args.dir or Path(tempfile.mkdtemp(prefix="zc-sendpaths-"))
    root.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * 2**20
    name = f"big{args.size_mib}m.bin"
    make_file(root / name, size)
    warm(root / name)
    print(f"# {time.strftime('%Y-%m-%d')} on {machine()}, pinned={pinned}")
    print(f"\n{args.size_mib} MiB download with curl, median of {args.runs}:\n")
    print(table(measure_large(root, name, size, args.runs, scpu, ccpu)))
    if args.inline_sweep:
        print(f"\nwrk -t1 -c50 {args.seconds}s, req/s by body size and path (uvloop):\n")
        print(table(measure_inline_sweep(root, scpu, ccpu, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
