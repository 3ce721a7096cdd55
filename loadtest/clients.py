"""The load generators: wrk (and parsing its report) and curl, optionally pinned to a CPU."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .system import taskset

HERE = Path(__file__).resolve().parent
MANY_LUA = HERE / "many.lua"
RANGES_LUA = HERE / "ranges.lua"

# What every wrk request carries besides Host (which wrk adds): the fields a browser sends
# for a page's sub-resource, Firefox's, 8 with Host. A server that parses each field in
# Python pays for every one. --plain-heads sends wrk's default instead (Host only).
BROWSER_HEADS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Referer", "http://127.0.0.1/index.html"),
    ("Connection", "keep-alive"),
    ("Upgrade-Insecure-Requests", "1"),
)


def head_args(heads: Sequence[tuple[str, str]]) -> list[str]:
    """wrk's -H arguments for these fields: ["-H", "Name: value", ...]."""
    out: list[str] = []
    for name, value in heads:
        out += ["-H", f"{name}: {value}"]
    return out


_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTE_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, "PB": 2**50}
_NUM = r"(\d+(?:\.\d+)?)"


def parse_time(text: str) -> float:
    """A wrk duration ("812.00us", "1.20ms", "2.00s", "1.00m") in seconds."""
    m = re.fullmatch(_NUM + r"(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_bytes(text: str) -> float:
    """A wrk byte count ("330.00MB", "1.5GB", "12B"; binary units) in bytes."""
    m = re.fullmatch(_NUM + r"([KMGTP]?B)", text.strip())
    if not m:
        raise ValueError(f"not a wrk byte count: {text!r}")
    return float(m.group(1)) * _BYTE_UNITS[m.group(2)]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency: dict[str, float]  # percentile ("50", "99", ...) -> seconds
    transfer_per_s: float  # bytes/s, headers included
    bytes_read: float
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            "p50_ms": self.latency.get("50", 0.0) * 1e3,
            "p99_ms": self.latency.get("99", 0.0) * 1e3,
            "latency_ms": {k: v * 1e3 for k, v in self.latency.items()},
            "transfer_per_s": self.transfer_per_s,
            "bytes_read": self.bytes_read,
            "non_2xx_3xx": self.non_2xx_3xx,
            "socket_errors": self.socket_errors,
        }


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's report (run with --latency). Raises ValueError when it is not one."""
    m = re.search(r"^\s*(\d+) requests in (\S+), (\S+) read", text, re.M)
    rps = re.search(r"^Requests/sec:\s+" + _NUM, text, re.M)
    if not m or not rps:
        raise ValueError(f"no wrk summary in: {text[-500:]!r}")
    latency: dict[str, float] = {}
    _, _, dist = text.partition("Latency Distribution")
    for lm in re.finditer(r"^\s+" + _NUM + r"%\s+(\S+)\s*$", dist, re.M):
        key = lm.group(1).removesuffix(".00").removesuffix(".0")
        latency[key] = parse_time(lm.group(2))
    transfer = re.search(r"^Transfer/sec:\s+(\S+)", text, re.M)
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = {}
    if sock:
        errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    return WrkResult(
        requests=int(m.group(1)),
        seconds=parse_time(m.group(2)),
        rps=float(rps.group(1)),
        latency=latency,
        transfer_per_s=parse_bytes(transfer.group(1)) if transfer else 0.0,
        bytes_read=parse_bytes(m.group(3)),
        non_2xx_3xx=int(non.group(1)) if non else 0,
        socket_errors=errors,
    )


def wrk_command(
    url: str,
    seconds: int,
    connections: int,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    cpu: int | None = None,
    threads: int = 1,
    heads: Sequence[tuple[str, str]] = (),
) -> list[str]:
    cmd = [
        *taskset(cpu),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        *head_args(heads),
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    return cmd


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    cpu: int | None = None,
    heads: Sequence[tuple[str, str]] = (),
) -> WrkResult:
    """One wrk run (keep-alive, one thread), bounded to its duration + 30 s."""
    cmd = wrk_command(url, seconds, connections, script, script_args, cpu, heads=heads)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return parse_wrk(out.stdout)


@dataclass
class CurlBatch:
    """Concurrent curl downloads of one URL: what arrived, and the wall time of the batch."""

    sizes: list[int]
    codes: list[int]
    seconds: float

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    @property
    def bytes_per_s(self) -> float:
        return self.total_bytes / self.seconds if self.seconds > 0 else 0.0


def curl_command(
    url: str, cpu: int | None, max_time: float, extra: Sequence[str] = ()
) -> list[str]:
    return [
        *taskset(cpu),
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        str(int(max_time)),
        "-w",
        "%{http_code} %{size_download}",
        *extra,
        url,
    ]


def curl_batch(url: str, count: int, cpu: int | None, timeout: float = 120.0) -> CurlBatch:
    """``count`` simultaneous ``curl -s -o /dev/null`` downloads; every curl is reaped."""
    procs: list[subprocess.Popen[str]] = []
    try:
        t0 = time.perf_counter()
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    curl_command(url, cpu, timeout),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=timeout + 10)[0] for p in procs]
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    codes, sizes = [], []
    for out in outs:
        code, size = [*out.split(), "0", "0"][:2]
        codes.append(int(code))
        sizes.append(int(float(size)))
    return CurlBatch(sizes=sizes, codes=codes, seconds=seconds)


def curl_range(url: str, first: int, last: int, cpu: int | None = None) -> tuple[int, int]:
    """One ranged GET: (status, body bytes)."""
    out = subprocess.run(
        curl_command(url, cpu, 30, ["-r", f"{first}-{last}"]),
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    ).stdout.split()
    return (int(out[0]), int(float(out[1]))) if len(out) == 2 else (0, 0)


def missing_tools() -> list[str]:
    return [t for t in ("wrk", "curl") if shutil.which(t) is None]
