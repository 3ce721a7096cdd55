"""Load-test zerocopy-server against its peers, with real load generators.

    python -m loadtest [--quick] [--rounds N] [--servers zc-uvloop,nginx,...]
                       [--scenarios small-4k,...] [--plain-heads] [--idle N]
                       [--no-pin] [--data DIR] [--out DIR] [--large-mib N] [--baseline REV]

All chosen servers are started at once on 127.0.0.1, each as ONE process with ONE event loop,
each pinned to the server CPU, on the same generated data set (loadtest/dataset.py), page
cache warm. Then the cells run interleaved (loadtest/rounds.py): for each round, for each
scenario, for each server (A B C, A B C), so the machine's drift falls on all alike; each
figure is reported as the median over rounds with its [min-max], and results.json keeps
every round's raw figures.

    zc-uvloop       zerocopy uvloop+sendfile    python -m server --loop uvloop
    zc-asyncio      zerocopy asyncio+sendfile   python -m server --loop asyncio
    zc-buffered     zerocopy buffered           python -m server --loop uvloop --no-sendfile
    nginx           nginx, 1 worker, sendfile on, tcp_nopush on (skipped if not installed)
    nginx-ofc       the same nginx plus open_file_cache (max=10000 inactive=60s, valid 60s,
                    min_uses 1, errors on): no open/fstat per request
    aiohttp         aiohttp web.static on asyncio's loop   (loadtest/peers/aiohttp_static.py)
    aiohttp-uvloop  aiohttp web.static on uvloop
    granian         Granian 2.x's own static-file handler (Rust), 1 worker, 1 runtime thread,
                    under /static (loadtest/peers/granian_app.py; skipped if not installed);
                    no ETag, ignores Range: no ranges cell
    floor           loadtest/peers/floor.py: uvloop + httptools, every response precomputed,
                    one stat per request: the Python floor; small files and idle only
    raw-sendfile    blocking os.sendfile loop (loadtest/peers/raw_sendfile.py): the physical
                    limit for large downloads; large-file scenarios only

Scenarios (loadtest/scenarios.py): small-4k, small-64k, small-many (wrk -t1 -c50 keep-alive),
ranges (wrk -t1 -c16, random 1 MiB ranges of the large file), large-1 and large-4 (1 and 4
concurrent curl downloads of the large file: MB/s, CPU s/GiB, peak RSS), idle-10k (--idle N
keep-alive connections held by one client process, loadtest/idle.py: the server's RSS
before and with them, KiB per connection).

Every wrk cell reports req/s, p50, p99 and the server's CPU per request: core µs/req (the
headline: the pinned server core's busy time, so the kernel's network work counts too),
process, user and sys µs/req (/proc/PID/stat utime, stime). The tables give the headline's
ratio to nginx and to nginx-ofc. wrk requests carry 8 browser-like fields (Host and
clients.BROWSER_HEADS: a Firefox User-Agent, Accept, Accept-Language, Accept-Encoding,
Referer, Connection, Upgrade-Insecure-Requests); --plain-heads sends wrk's Host only.

By default (2+ cores) the servers are pinned to CPU 0 and wrk, curl, the idle client and this
harness to CPU 1. idle-10k raises RLIMIT_NOFILE (soft to hard; the hard limit too when
allowed) before the servers start, so they inherit it; it passes --max-connections N+100 and
--keepalive-timeout 60 to our server, worker_connections N+100 to nginx, --backpressure
N+100 to granian.

Outputs in --out (default loadtest/results/): results.md (also printed), results.json (all
raw figures, every round), results.png (needs matplotlib).

Time budget (10 servers: 9 take the small-file cells, 7 ranges, 9 the large file, 9 idle;
2 cores, a page-cached 1 GiB file at 1-2 GB/s over loopback):

    default (--rounds 3): wrk cells 3 s (+ a 1 s warm-up in round 1 only) and ~0.3 s
             between cells:  small 3 x 9 x 3 x 3.3 s + 27 s            ~ 295 s
             ranges 7 x 3 x 3.3 s + 7 s                                ~  75 s
             large: per round and server 1 x 1 GiB + 4 x 1 GiB (and a 100 MiB warm-up
             once): 9 x 3 x ~4.5 s                                     ~ 125 s
             idle-10k: 10,000 connections, ~4-8 s a cell, 9 x 3        ~ 160 s
             start/stop, range check, data generation (first run ~5 s) ~  20 s
             total                                            ~ 11 min at most
             (measured: 9 min 4 s, 183 cells, on a machine shared with other jobs)
    (5 s cells, as in v1, would make it ~15 min; --scenarios small-4k,small-many,
    small-64k,idle-10k alone takes ~7 min: measured 6 min 39 s - 7 min 5 s.)
    --quick (--rounds 1): 1 s wrk cells, no warm-up, a 256 MiB large file, 2,000 idle
             connections: ~ 30 + 8 + 15 + 25 s + start ~ 85 s (measured 66-81 s)
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
from . import rounds as rounds_mod
from .clients import missing_tools
from .dataset import GIB, MIB, DataSet
from .idle import FD_MARGIN
from .system import Machine, peak_rss_kib, pin_self, raise_nofile

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
        "--rounds", type=int, help="interleaved rounds (default 3; --quick: 1)", metavar="N"
    )
    p.add_argument(
        "--plain-heads",
        action="store_true",
        help="wrk sends its default request head (Host only), not the browser-like one",
    )
    p.add_argument(
        "--idle",
        type=int,
        metavar="N",
        help="idle-10k: connections to hold (default 10,000; --quick: 2,000)",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run each chosen zerocopy server as it was at git revision REV, right "
        "before the current one (before/after in one run)",
    )
    return p


def settings_text(s: scenarios.Settings, large_title: str, kinds: set[str], rounds: int) -> str:
    """One paragraph on how the scenarios that run are measured."""
    parts = [
        f"{rounds} interleaved round(s): all servers up at once, each cell run server after "
        "server (A B C, A B C); each figure is the median over rounds with its "
        "[min\u2013max]."
    ]
    if "small" in kinds or "ranges" in kinds:
        heads = (
            "browser-like heads: " + ", ".join(n for n, _ in s.heads) + " and Host "
            f"({len(s.heads) + 1} fields, loadtest/clients.py BROWSER_HEADS)"
            if s.heads
            else "wrk's plain heads (Host only)"
        )
        parts.append(f"wrk requests carry {heads}.")
    if "small" in kinds:
        warm = f" after a {s.warmup_seconds} s warm-up in round 1" if s.warmup_seconds else ""
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
            f"Large: curl -s -o /dev/null after one 100 MiB warm-up download; per round "
            f"{s.large_runs} single download(s) and {s.large4_runs} round(s) of 4 concurrent "
            f"ones (aggregate)."
        )
    if "idle" in kinds:
        parts.append(
            f"Idle: {s.idle_connections:,} keep-alive connections from one client process, "
            f"each with one 4 KiB GET answered, held; VmRSS of the serving process after a "
            f"warm-up request and {s.idle_settle_s:g} s after the last connection opened."
        )
    parts.append("Every server: one process, one event loop (nginx, granian: one worker).")
    return " ".join(parts)


def start_all(
    chosen_servers: list[servers.Server],
    data: DataSet,
    settings: scenarios.Settings,
    run_dir: Path,
    progress: Progress,
    connections: int,
) -> tuple[list[dict[str, Any]], dict[str, servers.Running]]:
    """Start every chosen server (each pinned to the server CPU): their result dicts, and
    the running ones by id. A missing or failed server gets "skipped" or "error"."""
    results: list[dict[str, Any]] = []
    running: dict[str, servers.Running] = {}
    for i, server in enumerate(chosen_servers, 1):
        result: dict[str, Any] = {"id": server.id, "name": server.name, "scenarios": {}}
        if server.note:
            result["note"] = server.note
        results.append(result)
        reason = server.missing()
        if reason:
            result["skipped"] = reason
            progress(f"{i}/{len(chosen_servers)} {server.id}: skipped ({reason})")
            continue
        progress(f"{i}/{len(chosen_servers)} {server.id}: starting")
        try:
            r = server.start(
                data.root, run_dir / "servers", settings.server_cpu, connections=connections
            )
        except servers.StartError as e:
            result["error"] = f"did not start: {e}"
            continue
        running[server.id] = r
        result.update(
            {"pid": r.pid, "serving_pid": r.serving_pid(), "port": r.port, "command": r.command}
        )
    return results, running


def run_rounds(
    rounds: int,
    chosen: list[scenarios.Scenario],
    results: list[dict[str, Any]],
    running: dict[str, servers.Running],
    data: DataSet,
    settings: scenarios.Settings,
    progress: Progress,
) -> None:
    """Every cell in the interleaved order, each round's figures appended to
    ``result["scenarios"][id]["rounds"]`` as it finishes (an interrupt keeps them)."""
    by_id = {r["id"]: r for r in results}
    for result in results:
        if result["id"] not in running:
            continue
        server = running[result["id"]].server
        for sc in chosen:
            result["scenarios"][sc.id] = {"rounds": []} if sc.applies_to(server) else None
        result["peak_rss_kib"] = 0
    active = list(running.values())
    plan = rounds_mod.schedule(rounds, chosen, active, lambda sc, r: sc.applies_to(r.server))
    idled: set[str] = set()
    for n, (rnd, sc, r) in enumerate(plan, 1):
        result = by_id[r.server.id]
        if result.get("error"):
            continue
        progress(f"cell {n}/{len(plan)} round {rnd}/{rounds} {sc.id} {r.server.id}")
        t0 = time.monotonic()
        try:
            figures = sc.run(r, data, settings)
        except Exception as e:  # one failed cell must not lose the others
            figures = {"error": f"{type(e).__name__}: {e}"}
        figures["round"] = rnd
        figures["elapsed_s"] = time.monotonic() - t0
        result["scenarios"][sc.id]["rounds"].append(figures)
        if r.proc.poll() is not None:
            result["error"] = f"the server exited ({r.proc.returncode}) during {sc.id}"
            continue
        # Peak RSS outside idle-10k: VmHWM up to the server's first idle cell, and the
        # peak sampled during large-4 (whose reset of VmHWM it reports before the reset)
        # until then (a Python server keeps what its idle connections took).
        if sc.kind == "idle":
            idled.add(r.server.id)
            continue
        if r.server.id in idled:
            continue
        peaks = [peak_rss_kib(r.serving_pid())]
        if sc.id == "large-4":
            peaks += [figures.get("peak_rss_kib"), figures.get("hwm_before_reset_kib")]
        result["peak_rss_kib"] = max(
            [result["peak_rss_kib"], *(p for p in peaks if isinstance(p, int))]
        )


def aggregate_results(results: list[dict[str, Any]]) -> None:
    """Each cell's rounds replaced by their aggregate (medians, ranges, the rounds)."""
    for result in results:
        for sid, cell in (result.get("scenarios") or {}).items():
            if isinstance(cell, dict) and "rounds" in cell and "n_rounds" not in cell:
                result["scenarios"][sid] = rounds_mod.aggregate(cell["rounds"])
        if not result.get("peak_rss_kib"):
            result.pop("peak_rss_kib", None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for s in servers.SERVERS:
            print(f"{s.id:15} {s.name}{'' if not s.missing() else '  (' + s.missing() + ')'}")
        for s in servers.EXTRA_SERVERS:
            print(f"{s.id:15} {s.name}  (not in the default run)")
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
    if args.plain_heads:
        settings = replace(settings, heads=())
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        print("error: --rounds must be at least 1", file=sys.stderr)
        return 2
    large_mib = args.large_mib or (256 if args.quick else 1024)
    if large_mib < 2:
        print("error: --large-mib must be at least 2 (the ranges are 1 MiB)", file=sys.stderr)
        return 2
    large_title = f"{large_mib // 1024} GiB" if large_mib % 1024 == 0 else f"{large_mib} MiB"
    notes: list[str] = []
    idle_conns = 0
    if any(sc.kind == "idle" for sc in chosen):
        wanted = args.idle if args.idle is not None else settings.idle_connections
        # The servers (children) inherit the limits; every idle connection costs one fd
        # in the server and one in the client.
        soft, _hard = raise_nofile(wanted + 4 * FD_MARGIN)
        idle_conns = max(1, min(wanted, soft - FD_MARGIN))
        if idle_conns < wanted:
            notes.append(
                f"idle-10k: RLIMIT_NOFILE is {soft}: {idle_conns:,} connections instead of "
                f"{wanted:,}."
            )
        settings = replace(settings, idle_connections=idle_conns)
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
        "rounds": rounds,
        "pinned": pinned,
        "server_cpu": settings.server_cpu,
        "client_cpu": settings.client_cpu,
        "scenarios": [s.id for s in chosen],
        "servers": [s.id for s in chosen_servers],
        "large_bytes": data.large_size,
        "large_title": large_title,
        "settings": asdict(settings),
        "settings_text": settings_text(settings, large_title, {s.kind for s in chosen}, rounds),
        "notes": notes,
        "data_dir": str(data.root),
        "load_average_at_start": os.getloadavg()[0],
    }
    results: list[dict[str, Any]] = []
    running: dict[str, servers.Running] = {}
    interrupted = False
    try:
        progress(f"data set in {data.root} ({data.large_size / GIB:.2f} GiB large file)")
        data.root.mkdir(parents=True, exist_ok=True)
        written = data.prepare()
        progress(f"data set ready ({written} files written, all read once)")
        results, running = start_all(chosen_servers, data, settings, run_dir, progress, idle_conns)
        run_rounds(rounds, chosen, results, running, data, settings, progress)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: writing what was measured")
    finally:
        for r in running.values():
            r.stop()
        progress.done()
        shutil.rmtree(run_dir, ignore_errors=True)
    aggregate_results(results)

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
