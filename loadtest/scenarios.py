"""The measurements: what each scenario asks of a running server, and the raw figures it keeps.

small-4k, small-64k, small-many  wrk -t1 -c50 (keep-alive) on the 4 KiB file, the 64 KiB file
                                 and, with loadtest/many.lua, the 1,000 4 KiB files in turn
large-1, large-4                 1 and 4 concurrent curl downloads of the large file
ranges                           wrk -t1 -c16 with loadtest/ranges.lua: random 1 MiB ranges
idle-10k                         N keep-alive connections held idle (loadtest/idle.py): the
                                 server's RSS before and with them, KiB per connection

Every wrk cell keeps, besides wrk's figures, the server's CPU per request: the pinned core's
busy time (/proc/stat: the process and the kernel's network work on that core), the server
processes' user+sys, user and sys (/proc/PID/stat utime, stime), in µs per request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from select import select as wait_readable
from typing import Any

from .clients import (
    BROWSER_HEADS,
    MANY_LUA,
    RANGES_LUA,
    CurlBatch,
    WrkResult,
    curl_batch,
    curl_range,
    run_wrk,
)
from .dataset import GIB, MANY_COUNT, MANY_DIR, MEDIUM_SIZE, MIB, DataSet
from .idle import kib_per_connection
from .servers import REPO, Running
from .system import (
    cpu_busy_seconds,
    peak_rss_kib,
    reset_peak_rss,
    rss_kib,
    socket_count,
    taskset,
    tree_cpu_split,
)

RANGE_LENGTH = MIB


@dataclass(frozen=True)
class Settings:
    """How long and how often; and which CPUs (None: not pinned)."""

    wrk_seconds: int = 3
    warmup_seconds: int = 1  # before a server's first cell of each wrk scenario only
    ranges_seconds: int = 3
    large_runs: int = 1  # per round
    large4_runs: int = 1  # per round
    small_connections: int = 50
    ranges_connections: int = 16
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    curl_timeout: float = 120.0
    heads: tuple[tuple[str, str], ...] = BROWSER_HEADS  # wrk -H fields; () for Host only
    idle_connections: int = 10_000
    idle_settle_s: float = 1.0  # between the last connection opened and the RSS read
    idle_timeout_s: float = 60.0  # the whole idle-10k cell of one server

    @property
    def pinned(self) -> bool:
        return self.server_cpu is not None


QUICK = Settings(
    wrk_seconds=1,
    warmup_seconds=0,
    ranges_seconds=1,
    large_runs=1,
    large4_runs=1,
    idle_connections=2_000,
)
DEFAULT = Settings()


class CpuMeter:
    """The server's user and sys time (all its processes) and its pinned core's busy time."""

    def __init__(self, running: Running, core: int | None) -> None:
        self.pids = running.pids()
        self.core = core
        self.user_s = self.sys_s = 0.0
        self.core_s: float | None = None

    @property
    def process_s(self) -> float:
        return self.user_s + self.sys_s

    def __enter__(self) -> CpuMeter:
        self._u0, self._s0 = tree_cpu_split(self.pids)
        self._c0 = cpu_busy_seconds(self.core) if self.core is not None else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        u1, s1 = tree_cpu_split(self.pids)
        self.user_s, self.sys_s = u1 - self._u0, s1 - self._s0
        if self.core is not None:
            self.core_s = cpu_busy_seconds(self.core) - self._c0


def per_request(meter: CpuMeter, requests: int) -> dict[str, float | None]:
    """The CPU figures of a wrk cell, and each in µs per request (the headline: core)."""
    n = requests or 0

    def us(seconds: float | None) -> float | None:
        return seconds / n * 1e6 if n and seconds is not None else None

    return {
        "process_cpu_s": meter.process_s,
        "user_cpu_s": meter.user_s,
        "sys_cpu_s": meter.sys_s,
        "core_busy_s": meter.core_s,
        "core_us_per_req": us(meter.core_s),
        "process_us_per_req": us(meter.process_s),
        "user_us_per_req": us(meter.user_s),
        "sys_us_per_req": us(meter.sys_s),
    }


class RssSampler:
    """Polls VmRSS every 20 ms in a thread (bounded by the with block)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class ScenarioError(RuntimeError):
    pass


def _cpu_fields(
    process_s: float, core_s: float | None, nbytes: float, user_s: float = 0.0, sys_s: float = 0.0
) -> dict[str, Any]:
    gib = nbytes / GIB
    return {
        "process_cpu_s": process_s,
        "user_cpu_s": user_s,
        "sys_cpu_s": sys_s,
        "core_busy_s": core_s,
        "process_s_per_gib": process_s / gib if gib else None,
        "core_s_per_gib": core_s / gib if gib and core_s is not None else None,
        "user_s_per_gib": user_s / gib if gib else None,
        "sys_s_per_gib": sys_s / gib if gib else None,
    }


def _check_wrk(res: WrkResult) -> None:
    """A cell whose responses were not all 2xx/3xx measured something else: an error."""
    if res.requests == 0:
        raise ScenarioError(f"wrk completed no request (socket errors {res.socket_errors})")
    if res.non_2xx_3xx:
        raise ScenarioError(f"{res.non_2xx_3xx} of {res.requests} responses not 2xx/3xx")


def _warm_wrk(
    running: Running, key: str, s: Settings, url: str, c: int, script: Any, args: tuple[str, ...]
) -> None:
    """The wrk warm-up, once per server and scenario (its first round only)."""
    if s.warmup_seconds and key not in running.warmed:
        run_wrk(url, s.warmup_seconds, c, script, args, s.client_cpu, s.heads)
        running.warmed.add(key)


def _wrk_cell(
    running: Running,
    s: Settings,
    key: str,
    path: str,
    script: Any = None,
    args: tuple[str, ...] = (),
) -> dict[str, Any]:
    url = running.url(path)
    _warm_wrk(running, key, s, url, s.small_connections, script, args)
    with CpuMeter(running, s.server_cpu) as meter:
        res = run_wrk(url, s.wrk_seconds, s.small_connections, script, args, s.client_cpu, s.heads)
    _check_wrk(res)
    out = res.as_dict()
    out["connections"] = s.small_connections
    out.update(per_request(meter, res.requests))
    return out


def small_4k(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _wrk_cell(running, s, "small-4k", data.small)


def small_64k(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _wrk_cell(running, s, "small-64k", data.mid)


def small_many(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    args = (str(MANY_COUNT), running.path(MANY_DIR) + "/")
    return _wrk_cell(running, s, "small-many", "", MANY_LUA, args)


def _check_batch(batch: CurlBatch, size: int) -> None:
    if any(c != 200 for c in batch.codes) or any(n != size for n in batch.sizes):
        raise ScenarioError(f"bad download: status {batch.codes}, bytes {batch.sizes} != {size}")


def _warm_up(running: Running, data: DataSet, s: Settings) -> None:
    """One 100 MiB download before the first large-file measurement (first-use costs)."""
    if not running.warmed_up:
        batch = curl_batch(running.url(data.medium), 1, s.client_cpu, s.curl_timeout)
        _check_batch(batch, MEDIUM_SIZE)
        running.warmed_up = True


def _downloads(running: Running, data: DataSet, s: Settings, count: int, runs: int) -> dict:
    _warm_up(running, data, s)
    url = running.url(data.large)
    speeds, seconds, user_s, sys_s, nbytes = [], [], 0.0, 0.0, 0
    core_s: float | None = 0.0 if s.pinned else None
    for _ in range(runs):
        with CpuMeter(running, s.server_cpu) as meter:
            batch = curl_batch(url, count, s.client_cpu, s.curl_timeout)
        _check_batch(batch, data.large_size)
        speeds.append(batch.bytes_per_s / 1e6)
        seconds.append(batch.seconds)
        user_s += meter.user_s
        sys_s += meter.sys_s
        if core_s is not None and meter.core_s is not None:
            core_s += meter.core_s
        nbytes += batch.total_bytes
    return {
        "concurrency": count,
        "file_bytes": data.large_size,
        "runs": runs,
        "mb_per_s": statistics.median(speeds),
        "mb_per_s_runs": speeds,
        "seconds_runs": seconds,
        "bytes": nbytes,
        **_cpu_fields(user_s + sys_s, core_s, nbytes, user_s, sys_s),
    }


def large_1(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _downloads(running, data, s, 1, s.large_runs)


def large_4(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    _warm_up(running, data, s)
    pid = running.serving_pid()
    before = peak_rss_kib(pid)
    start = rss_kib(pid)
    was_reset = reset_peak_rss(pid)
    with RssSampler(pid) as sampler:
        out = _downloads(running, data, s, 4, s.large4_runs)
    hwm = peak_rss_kib(pid) if was_reset else 0
    out["peak_rss_kib"] = max(hwm, sampler.peak)
    # What the four downloads took on top of what the process held when they began (after
    # an idle-10k round, a Python server still holds what its connections took).
    out["rss_start_kib"] = start
    out["rss_growth_kib"] = max(0, out["peak_rss_kib"] - start)
    out["peak_rss_sampled_kib"] = sampler.peak
    out["peak_rss_hwm_reset"] = was_reset
    out["hwm_before_reset_kib"] = before
    return out


def ranges(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    status, got = curl_range(running.url(data.large), 12345, 12345 + RANGE_LENGTH - 1)
    if (status, got) != (206, RANGE_LENGTH):
        raise ScenarioError(f"range request answered {status} with {got} bytes")
    url = running.url("")
    args = (running.path(data.large), str(data.large_size), str(RANGE_LENGTH), "12345")
    c = s.ranges_connections
    _warm_wrk(running, "ranges", s, url, c, RANGES_LUA, args)
    with CpuMeter(running, s.server_cpu) as meter:
        res = run_wrk(url, s.ranges_seconds, c, RANGES_LUA, args, s.client_cpu, s.heads)
    _check_wrk(res)
    out = res.as_dict()
    body = res.requests * RANGE_LENGTH
    out.update(
        {
            "connections": c,
            "range_bytes": RANGE_LENGTH,
            "mb_per_s": res.rps * RANGE_LENGTH / 1e6,
            **_cpu_fields(meter.process_s, meter.core_s, body, meter.user_s, meter.sys_s),
            **per_request(meter, res.requests),
        }
    )
    return out


class LineReader:
    """Lines from a child's stdout pipe, each wait bounded (os.read on the fd: no Python
    buffer for select to miss)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buf = b""

    def readline(self, deadline: float) -> str:
        """The next line, or "" when the deadline passes or the pipe closes first."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_readable([self.fd], [], [], left)[0]:
                return ""
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")


def _get_once(running: Running, path: str) -> int:
    """One GET on a fresh connection, the body read; its status (0 when it failed)."""
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    try:
        conn.request("GET", running.path(path))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def idle(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    """N keep-alive connections, each with one 4 KiB GET answered, held by a client process
    on the client CPU; the serving process's VmRSS before (after a warm-up request) and
    ~1 s after the last one opened; KiB per connection against the RSS before the server's
    first idle cell. Bounded by ``s.idle_timeout_s``."""
    deadline = time.monotonic() + s.idle_timeout_s
    pid = running.serving_pid()
    status = _get_once(running, data.small)
    if status != 200:
        raise ScenarioError(f"the warm-up request answered {status}")
    time.sleep(0.2)
    before, socks_before = rss_kib(pid), socket_count(pid)
    # A server seldom gives back to the OS what its first N connections took: later rounds
    # start higher and reuse it. The headline is against the RSS before the first round.
    running.idle_baseline_kib = running.idle_baseline_kib or before
    cmd = [
        *taskset(s.client_cpu),
        sys.executable,
        "-m",
        "loadtest.idle",
        "--port",
        str(running.port),
        "--path",
        running.path(data.small),
        "--count",
        str(s.idle_connections),
        "--hold",
        str(int(s.idle_timeout_s)),
    ]
    client = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = LineReader(client.stdout)
    try:
        line = lines.readline(deadline)
        if not line:
            raise ScenarioError(
                f"the idle client reported nothing in {s.idle_timeout_s:.0f} s "
                f"(exit {client.poll()})"
            )
        opened = json.loads(line)
        time.sleep(s.idle_settle_s)
        held_kib, socks_held = rss_kib(pid), socket_count(pid)
        hwm = peak_rss_kib(pid)
        assert client.stdin is not None
        client.stdin.write("close\n")
        client.stdin.flush()
        closed = lines.readline(deadline)
        client.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        for pipe in (client.stdin, client.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
    time.sleep(0.5)
    n = int(opened["opened"])
    out: dict[str, Any] = {
        "connections_wanted": s.idle_connections,
        "connections": n,
        "failed": opened.get("failed", 0),
        "first_error": opened.get("first_error"),
        "client_note": opened.get("note") or None,
        "open_s": opened.get("open_s"),
        "rss_before_kib": before,
        "rss_idle_kib": held_kib,
        "rss_after_close_kib": rss_kib(pid),
        "hwm_idle_kib": hwm,
        "rss_baseline_kib": running.idle_baseline_kib,
        "kib_per_conn": kib_per_connection(running.idle_baseline_kib, held_kib, n),
        "kib_per_conn_this_round": kib_per_connection(before, held_kib, n),
        "sockets_before": socks_before,
        "sockets_idle": socks_held,
        "sockets_added": socks_held - socks_before,
        "closed": bool(closed),
    }
    if n == 0:
        raise ScenarioError(f"no idle connection opened: {opened.get('first_error')}")
    return out


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kind: str  # "small", "large", "ranges" or "idle"
    run: Callable[[Running, DataSet, Settings], dict[str, Any]]

    def applies_to(self, running_server: Any) -> bool:
        attr = {"small": "small_files", "ranges": "ranges", "large": "large", "idle": "idle"}
        return bool(getattr(running_server, attr[self.kind], True))


SCENARIOS: list[Scenario] = [
    Scenario("small-4k", "4 KiB", "small", small_4k),
    Scenario("small-64k", "64 KiB", "small", small_64k),
    Scenario("small-many", "1,000 distinct 4 KiB files", "small", small_many),
    Scenario("ranges", "1 MiB ranges", "ranges", ranges),
    Scenario("large-1", "1 download of the large file", "large", large_1),
    Scenario("large-4", "4 concurrent downloads of the large file", "large", large_4),
    Scenario("idle-10k", "idle keep-alive connections: RSS", "idle", idle),
]


def select(spec: str | None) -> list[Scenario]:
    """Scenarios named in a comma-separated list (all when None), in their standard order."""
    if not spec:
        return list(SCENARIOS)
    ids = {s.id for s in SCENARIOS}
    words = {w.strip() for w in spec.split(",") if w.strip()}
    unknown = words - ids
    if unknown:
        raise ValueError(f"unknown scenario {sorted(unknown)}; choose from {', '.join(ids)}")
    return [s for s in SCENARIOS if s.id in words]
