"""The measurements: what each scenario asks of a running server, and the raw figures it keeps.

small-4k, small-64k, small-many  wrk -t1 -c50 (keep-alive) on the 4 KiB file, the 64 KiB file
                                 and, with loadtest/many.lua, the 1,000 4 KiB files in turn
large-1, large-4                 1 and 4 concurrent curl downloads of the large file
ranges                           wrk -t1 -c16 with loadtest/ranges.lua: random 1 MiB ranges
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clients import (
    MANY_LUA,
    RANGES_LUA,
    CurlBatch,
    WrkResult,
    curl_batch,
    curl_range,
    run_wrk,
)
from .dataset import GIB, MANY_COUNT, MANY_DIR, MEDIUM_SIZE, MIB, DataSet
from .servers import Running
from .system import cpu_busy_seconds, peak_rss_kib, reset_peak_rss, rss_kib, tree_cpu_seconds

RANGE_LENGTH = MIB


@dataclass(frozen=True)
class Settings:
    """How long and how often; and which CPUs (None: not pinned)."""

    wrk_seconds: int = 5
    warmup_seconds: int = 1
    ranges_seconds: int = 5
    large_runs: int = 3
    large4_runs: int = 1
    small_connections: int = 50
    ranges_connections: int = 16
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    curl_timeout: float = 120.0

    @property
    def pinned(self) -> bool:
        return self.server_cpu is not None


QUICK = Settings(wrk_seconds=1, warmup_seconds=0, ranges_seconds=1, large_runs=1, large4_runs=1)
DEFAULT = Settings()


class CpuMeter:
    """The server's user+sys time (all its processes) and its pinned core's busy time."""

    def __init__(self, running: Running, core: int | None) -> None:
        self.pids = running.pids()
        self.core = core
        self.process_s = 0.0
        self.core_s: float | None = None

    def __enter__(self) -> CpuMeter:
        self._p0 = tree_cpu_seconds(self.pids)
        self._c0 = cpu_busy_seconds(self.core) if self.core is not None else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.process_s = tree_cpu_seconds(self.pids) - self._p0
        if self.core is not None:
            self.core_s = cpu_busy_seconds(self.core) - self._c0


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


def _cpu_fields(process_s: float, core_s: float | None, nbytes: float) -> dict[str, Any]:
    gib = nbytes / GIB
    return {
        "process_cpu_s": process_s,
        "core_busy_s": core_s,
        "process_s_per_gib": process_s / gib if gib else None,
        "core_s_per_gib": core_s / gib if gib and core_s is not None else None,
    }


def _check_wrk(res: WrkResult) -> None:
    """A cell whose responses were not all 2xx/3xx measured something else: an error."""
    if res.requests == 0:
        raise ScenarioError(f"wrk completed no request (socket errors {res.socket_errors})")
    if res.non_2xx_3xx:
        raise ScenarioError(f"{res.non_2xx_3xx} of {res.requests} responses not 2xx/3xx")


def _wrk_cell(
    running: Running, s: Settings, path: str, script: Any = None, args: tuple[str, ...] = ()
) -> dict[str, Any]:
    url = running.url(path)
    if s.warmup_seconds:
        run_wrk(url, s.warmup_seconds, s.small_connections, script, args, s.client_cpu)
    with CpuMeter(running, s.server_cpu) as meter:
        res = run_wrk(url, s.wrk_seconds, s.small_connections, script, args, s.client_cpu)
    _check_wrk(res)
    out = res.as_dict()
    out.update(
        {
            "connections": s.small_connections,
            "process_cpu_s": meter.process_s,
            "core_busy_s": meter.core_s,
        }
    )
    return out


def small_4k(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _wrk_cell(running, s, data.small)


def small_64k(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _wrk_cell(running, s, data.mid)


def small_many(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _wrk_cell(running, s, "", MANY_LUA, (str(MANY_COUNT), f"/{MANY_DIR}/"))


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
    speeds, seconds, process_s, nbytes = [], [], 0.0, 0
    core_s: float | None = 0.0 if s.pinned else None
    for _ in range(runs):
        with CpuMeter(running, s.server_cpu) as meter:
            batch = curl_batch(url, count, s.client_cpu, s.curl_timeout)
        _check_batch(batch, data.large_size)
        speeds.append(batch.bytes_per_s / 1e6)
        seconds.append(batch.seconds)
        process_s += meter.process_s
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
        **_cpu_fields(process_s, core_s, nbytes),
    }


def large_1(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    return _downloads(running, data, s, 1, s.large_runs)


def large_4(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    _warm_up(running, data, s)
    pid = running.serving_pid()
    before = peak_rss_kib(pid)
    was_reset = reset_peak_rss(pid)
    with RssSampler(pid) as sampler:
        out = _downloads(running, data, s, 4, s.large4_runs)
    hwm = peak_rss_kib(pid) if was_reset else 0
    out["peak_rss_kib"] = max(hwm, sampler.peak)
    out["peak_rss_sampled_kib"] = sampler.peak
    out["peak_rss_hwm_reset"] = was_reset
    out["hwm_before_reset_kib"] = before
    return out


def ranges(running: Running, data: DataSet, s: Settings) -> dict[str, Any]:
    status, got = curl_range(running.url(data.large), 12345, 12345 + RANGE_LENGTH - 1)
    if (status, got) != (206, RANGE_LENGTH):
        raise ScenarioError(f"range request answered {status} with {got} bytes")
    url = running.url("")
    args = (f"/{data.large}", str(data.large_size), str(RANGE_LENGTH), "12345")
    if s.warmup_seconds:
        run_wrk(url, s.warmup_seconds, s.ranges_connections, RANGES_LUA, args, s.client_cpu)
    with CpuMeter(running, s.server_cpu) as meter:
        res = run_wrk(url, s.ranges_seconds, s.ranges_connections, RANGES_LUA, args, s.client_cpu)
    _check_wrk(res)
    out = res.as_dict()
    body = res.requests * RANGE_LENGTH
    out.update(
        {
            "connections": s.ranges_connections,
            "range_bytes": RANGE_LENGTH,
            "mb_per_s": res.rps * RANGE_LENGTH / 1e6,
            **_cpu_fields(meter.process_s, meter.core_s, body),
        }
    )
    return out


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kind: str  # "small", "large" or "ranges"
    run: Callable[[Running, DataSet, Settings], dict[str, Any]]

    def applies_to(self, running_server: Any) -> bool:
        if self.kind == "small":
            return bool(running_server.small_files)
        if self.kind == "ranges":
            return bool(running_server.ranges)
        return True


SCENARIOS: list[Scenario] = [
    Scenario("small-4k", "4 KiB", "small", small_4k),
    Scenario("small-64k", "64 KiB", "small", small_64k),
    Scenario("small-many", "1,000 distinct 4 KiB files", "small", small_many),
    Scenario("ranges", "1 MiB ranges", "ranges", ranges),
    Scenario("large-1", "1 download of the large file", "large", large_1),
    Scenario("large-4", "4 concurrent downloads of the large file", "large", large_4),
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
