"""What the machine is and what a process costs: /proc accounting, peak RSS, taskset."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_busy_seconds(cpu: int) -> float:
    """Non-idle time of one CPU so far (user..steal, not idle or iowait), from /proc/stat."""
    with open(PROC / "stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]  # idle + iowait
                return (sum(v[:8]) - idle) / CLK_TCK
    raise RuntimeError(f"cpu{cpu} not in /proc/stat")


def process_cpu_seconds(pid: int) -> float:
    """A process's user+sys time so far, from /proc/PID/stat."""
    with open(PROC / str(pid) / "stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_split(pid: int) -> tuple[float, float]:
    """A process's (user, sys) time so far in seconds: utime and stime of /proc/PID/stat."""
    with open(PROC / str(pid) / "stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tree_cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, sys) of several processes added up; those that are gone count as 0."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            u, s = process_cpu_split(pid)
            user += u
            system += s
    return user, system


def fd_count(pid: int) -> int:
    """How many file descriptors a process holds (0 when unknown)."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


def socket_count(pid: int) -> int:
    """How many sockets a process holds (its fds that are sockets; 0 when unknown): its
    connections and listeners, not the files it keeps open (nginx's open_file_cache)."""
    n = 0
    try:
        for fd in os.scandir(PROC / str(pid) / "fd"):
            with contextlib.suppress(OSError):
                n += os.readlink(fd.path).startswith("socket:")
    except OSError:
        return 0
    return n


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE (soft to the hard limit; the hard limit to ``need``
    when below it and allowed, as root). Children inherit it. The (soft, hard) in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (scanning /proc; no CONFIG_PROC_CHILDREN needed)."""
    children = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        todo.extend(child_pids(p))
    return out


def tree_cpu_seconds(pids: list[int]) -> float:
    """user+sys of several processes; those that are gone count as 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += process_cpu_seconds(pid)
    return total


def _status_kib(pid: int, field: str) -> int:
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the process's peak resident set size so far, in KiB (0 when unknown)."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """VmRSS: the process's resident set size now, in KiB."""
    return _status_kib(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+); False if refused."""
    try:
        with open(PROC / str(pid) / "clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def taskset(cpu: int | None) -> list[str]:
    """The command prefix that pins a child to one CPU (empty when cpu is None)."""
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def pin_self(cpu: int | None) -> None:
    """Pin this (harness) process to one CPU, so its polling stays off the server's core."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def cpu_model() -> str:
    try:
        with open(PROC / "cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass(frozen=True)
class Machine:
    date: str
    cpu_model: str
    cores: int
    kernel: str
    python: str

    @classmethod
    def current(cls) -> Machine:
        return cls(
            date=time.strftime("%Y-%m-%d %H:%M"),
            cpu_model=cpu_model(),
            cores=os.cpu_count() or 1,
            kernel=platform.release(),
            python=platform.python_version(),
        )

    def describe(self) -> str:
        return f"{self.cpu_model}, {self.cores} cores, Linux {self.kernel}, Python {self.python}"


def machine() -> str:
    """One line: CPU model, core count, kernel release, Python version."""
    return Machine.current().describe()


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]
