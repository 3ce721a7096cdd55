"""Load-test zerocopy-server against its peers, with real load generators.

    python -m loadtest [--quick] [--servers zc-uvloop,nginx,...] [--scenarios small-4k,...]
                       [--no-pin] [--data DIR] [--out DIR]

Each server runs in turn on 127.0.0.1 as ONE process with ONE event loop, on the same
generated data set (see loadtest/dataset.py), page cache warm:

    zc-uvloop       zerocopy uvloop+sendfile    python -m server --loop uvloop
    zc-asyncio      zerocopy asyncio+sendfile   python -m server --loop asyncio
    zc-buffered     zerocopy buffered           python -m server --loop uvloop --no-sendfile
    nginx           nginx, 1 worker, sendfile on, tcp_nopush on (skipped if not installed)
    aiohttp         aiohttp web.static on asyncio's loop   (loadtest/peers/aiohttp_static.py)
    aiohttp-uvloop  aiohttp web.static on uvloop
    raw-sendfile    blocking os.sendfile loop (loadtest/peers/raw_sendfile.py): the physical
                    limit for large downloads; large-file scenarios only

Scenarios (loadtest/scenarios.py): small-4k, small-64k, small-many (wrk -t1 -c50 keep-alive,
req/s and p50/p99), ranges (wrk -t1 -c16, random 1 MiB ranges of the large file), large-1 and
large-4 (1 and 4 concurrent curl downloads of the large file: MB/s, CPU s/GiB, peak RSS).

By default (2+ cores) the server is pinned to CPU 0 and wrk, curl and this harness to CPU 1.

Outputs in --out (default loadtest/results/): results.md (also printed), results.json (all
raw figures), results.png (needs matplotlib).

Time budget (7 servers, 2 cores, a page-cached 1 GiB file at 1-3 GB/s over loopback):

    default: small-file cells 5 s + 1 s warm-up: 3 cells x 6 servers      = 108 s
             ranges 5 s + 1 s warm-up x 6 servers                          =  36 s
             large: 100 MiB warm-up, 3 x 1 GiB, 1 x (4 x 1 GiB) = 7.1 GiB per
             server, 3-10 s each x 7 servers                              ~  45 s
             start/stop, range check, data generation (first run ~5 s)    ~  15 s
             total                                                        ~ 3.5 min (< 5)
    (10 s small-file cells would add 90 s and risk the 5-minute budget: they are 5 s.)
    --quick: 1 s wrk cells, no warm-up, a 256 MiB large file, 1 download of each kind:
             ~ 24 + 7 + ~8 + ~8 s                                         ~ 45 s (< 60)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import report, scenarios, servers
from .clients import missing_tools
from .dataset import GIB, MIB, DataSet
from .system import Machine, peak_rss_kib, pin_self

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


class Progress:
    """One status line on stderr: elapsed time, which server, which scenario."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, text: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {text}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the whole run in under a minute")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument(
        "--pin",
        dest="pin",
        action="store_true",
        default=None,
        help="server on CPU 0, clients on CPU 1 (the default on 2+ cores)",
    )
    pin.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin")
    p.add_argument("--servers", help="comma-separated server ids (default: all)")
    p.add_argument("--scenarios", help="comma-separated scenario ids (default: all)")
    p.add_argument("--data", type=Path, help="data directory to (re)use (default: a temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    p.add_argument("--large-mib", type=int, help="large file size in MiB (1024; quick: 256)")
    p.add_argument("--list", action="store_true", help="list servers and scenarios, and exit")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run each chosen zerocopy server as it was at git revision REV, right "
        "before the current one (before/after in one run)",
    )
    return p


def settings_text(s: scenarios.Settings, large_title: str, kinds: set[str]) -> str:
    """One paragraph on how the scenarios that run are measured."""
    parts = []
    if "small" in kinds:
        warm = f" after a {s.warmup_seconds} s warm-up" if s.warmup_seconds else ""
        parts.append(
            f"Small files: wrk -t1 -c{s.small_connections} keep-alive --latency, "
            f"{s.wrk_seconds} s per cell{warm}."
        )
    if "ranges" in kinds:
        parts.append(
            f"Ranges: wrk -t1 -c{s.ranges_connections}, {s.ranges_seconds} s, random 1 MiB "
            f"ranges of the {large_title} file."
        )
    if "large" in kinds:
        parts.append(
            f"Large: curl -s -o /dev/null after one 100 MiB warm-up download; median of "
            f"{s.large_runs} single download(s), {s.large4_runs} round(s) of 4 concurrent "
            f"ones (aggregate)."
        )
    parts.append("Every server: one process, one event loop.")
    return " ".join(parts)


def run_one(
    server: servers.Server,
    data: DataSet,
    settings: scenarios.Settings,
    chosen: list[scenarios.Scenario],
    run_dir: Path,
    progress: Progress,
    label: str,
    result: dict[str, Any],
) -> None:
    """Run the scenarios on one server, filling ``result`` as they finish (so an interrupt
    keeps what was measured)."""
    result.update({"id": server.id, "name": server.name, "scenarios": {}})
    reason = server.missing()
    if reason:
        result["skipped"] = reason
        progress(f"{label} {server.id}: skipped ({reason})")
        return
    progress(f"{label} {server.id}: starting")
    try:
        running = server.start(data.root, run_dir / "servers", settings.server_cpu)
    except servers.StartError as e:
        result["error"] = f"did not start: {e}"
        return
    try:
        result["pid"], result["port"] = running.pid, running.port
        result["command"] = running.command
        hwm_before: list[int] = []
        for sc in chosen:
            if not sc.applies_to(server):
                result["scenarios"][sc.id] = None
                continue
            progress(f"{label} {server.id}: {sc.id}")
            t0 = time.monotonic()
            try:
                figures = sc.run(running, data, settings)
            except Exception as e:  # one failed cell must not lose the others
                figures = {"error": f"{type(e).__name__}: {e}"}
            figures["elapsed_s"] = time.monotonic() - t0
            result["scenarios"][sc.id] = figures
            if "hwm_before_reset_kib" in figures:
                hwm_before.append(figures["hwm_before_reset_kib"])
            if running.proc.poll() is not None:
                result["error"] = f"the server exited ({running.proc.returncode}) during {sc.id}"
                break
        if running.proc.poll() is None:
            result["peak_rss_kib"] = max([peak_rss_kib(running.serving_pid()), *hwm_before])
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for s in servers.SERVERS:
            print(f"{s.id:15} {s.name}{'' if not s.missing() else '  (' + s.missing() + ')'}")
        print()
        for sc in scenarios.SCENARIOS:
            print(f"{sc.id:15} {sc.title}")
        return 0
    try:
        chosen_servers = servers.select(args.servers)
        chosen = scenarios.select(args.scenarios)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    missing = missing_tools()
    if missing:
        print(f"error: {', '.join(missing)} not found on PATH", file=sys.stderr)
        return 2

    cores = os.cpu_count() or 1
    pinned = (cores >= 2) if args.pin is None else args.pin
    if pinned and cores < 2:
        print("note: fewer than 2 cores: not pinning", file=sys.stderr)
        pinned = False
    base = scenarios.QUICK if args.quick else scenarios.DEFAULT
    settings = replace(base, server_cpu=0 if pinned else None, client_cpu=1 if pinned else None)
    large_mib = args.large_mib or (256 if args.quick else 1024)
    if large_mib < 2:
        print("error: --large-mib must be at least 2 (the ranges are 1 MiB)", file=sys.stderr)
        return 2
    large_title = f"{large_mib // 1024} GiB" if large_mib % 1024 == 0 else f"{large_mib} MiB"
    if pinned:
        pin_self(settings.client_cpu)

    progress = Progress()
    run_dir = Path(tempfile.mkdtemp(prefix="zc-loadtest-"))
    if args.baseline:
        try:
            short = servers.export_revision(args.baseline, run_dir / "baseline")
        except ValueError as e:
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"error: {e}", file=sys.stderr)
            return 2
        chosen_servers = servers.with_baseline(chosen_servers, short, run_dir / "baseline")
    data = DataSet((args.data or run_dir / "data").resolve(), large_mib * MIB)
    meta: dict[str, Any] = {
        "machine": asdict(Machine.current()),
        "quick": args.quick,
        "pinned": pinned,
        "server_cpu": settings.server_cpu,
        "client_cpu": settings.client_cpu,
        "scenarios": [s.id for s in chosen],
        "servers": [s.id for s in chosen_servers],
        "large_bytes": data.large_size,
        "large_title": large_title,
        "settings": asdict(settings),
        "settings_text": settings_text(settings, large_title, {s.kind for s in chosen}),
        "data_dir": str(data.root),
        "load_average_at_start": os.getloadavg()[0],
    }
    results: list[dict[str, Any]] = []
    interrupted = False
    try:
        progress(f"data set in {data.root} ({data.large_size / GIB:.2f} GiB large file)")
        data.root.mkdir(parents=True, exist_ok=True)
        written = data.prepare()
        progress(f"data set ready ({written} files written, all read once)")
        for i, server in enumerate(chosen_servers, 1):
            label = f"{i}/{len(chosen_servers)}"
            results.append({})
            run_one(server, data, settings, chosen, run_dir, progress, label, results[-1])
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: writing what was measured")
    finally:
        progress.done()
        shutil.rmtree(run_dir, ignore_errors=True)

    meta["wall_seconds"] = progress.elapsed()
    meta["interrupted"] = interrupted
    meta["load_average_at_end"] = os.getloadavg()[0]
    out_data = {"meta": meta, "servers": results}
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "results.json", out_data)
    md = report.render(out_data)
    (args.out / "results.md").write_text(md)
    print(md)
    if report.write_png(args.out / "results.png", out_data):
        print(f"Wrote {args.out / 'results.md'}, results.json, results.png", file=sys.stderr)
    else:
        print(f"Wrote {args.out / 'results.md'}, results.json", file=sys.stderr)
    print(f"Wall time {progress.elapsed():.1f} s", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
