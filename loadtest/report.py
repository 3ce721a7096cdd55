"""The outputs: Markdown tables, one per scenario (ratios to nginx and nginx-ofc), JSON, a PNG."""

# ruff: noqa: RUF002, RUF003  (the en dash of a range on purpose)

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMES = "\u00d7"  # the multiplication sign, as in "0.42 times"
DASH = "\u2013"  # the en dash of a range, "11.9–13.0"
MICRO = "\u00b5"  # µs
REFERENCE = "nginx"  # the chart's red bar
REFERENCES = ("nginx", "nginx-ofc")  # the tables' ratios are to these servers' figures

Figures = dict[str, float | None]


def fmt_num(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators ("24,100", "0.21"); "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    if math.isnan(value) or math.isnan(reference):
        return None
    return value / reference


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r:.2f}{TIMES}" if r < 10 else f"{r:.1f}{TIMES}"


def cell(value: float | None, reference: float | None = None, digits: int = 0) -> str:
    """ "24,100 (0.42x)": the figure and, when there is a reference figure, its ratio."""
    text = fmt_num(value, digits)
    r = ratio(value, reference)
    return f"{text} ({fmt_ratio(r)})" if value is not None and r is not None else text


def fmt_pair(a: float | None, b: float | None, digits: int = 2) -> str:
    """ "0.95 / 2.10" (p50 / p99); "n/a" when either is missing."""
    if a is None or b is None:
        return "n/a"
    return f"{a:,.{digits}f} / {b:,.{digits}f}"


def spread(
    value: float | None, lo: float | None, hi: float | None, digits: int = 0, scale: float = 1.0
) -> str:
    """ "12.3 [11.9–13.0]": a median and its range over rounds (only the median when the
    range is one value or unknown); "n/a" without a median."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = fmt_num(value * scale, digits)
    if lo is None or hi is None:
        return text
    a, b = fmt_num(lo * scale, digits), fmt_num(hi * scale, digits)
    return text if a == b else f"{text} [{a}{DASH}{b}]"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def figures(result: dict[str, Any]) -> Figures:
    """One server's medians, flat: "small-4k.core_us_per_req", "large-1.mb_per_s", ...
    (None-free: a figure that is missing is absent), and "rss.peak_mib"."""
    out: Figures = {}
    for sid, cell_ in (result.get("scenarios") or {}).items():
        if not isinstance(cell_, dict) or "error" in cell_:
            continue
        for key, v in cell_.items():
            if _num(v) is not None:
                out[f"{sid}.{key}"] = float(v)
    rss = result.get("peak_rss_kib")
    out["rss.peak_mib"] = rss / 1024 if rss else None
    return out


@dataclass(frozen=True)
class Column:
    title: str
    key: str  # a figure of the scenario's aggregated cell
    digits: int = 0
    scale: float = 1.0  # shown as value * scale (KiB -> MiB: 1/1024)


_MIB = 1 / 1024
WRK_COLUMNS = [
    Column(f"core {MICRO}s/req", "core_us_per_req", 1),
    Column("req/s", "rps"),
    Column("p50 ms", "p50_ms", 2),
    Column("p99 ms", "p99_ms", 2),
    Column(f"process {MICRO}s/req", "process_us_per_req", 1),
    Column(f"user {MICRO}s/req", "user_us_per_req", 1),
    Column(f"sys {MICRO}s/req", "sys_us_per_req", 1),
]
RANGES_COLUMNS = [*WRK_COLUMNS[:2], Column("MB/s", "mb_per_s"), *WRK_COLUMNS[2:]]
LARGE_COLUMNS = [
    Column("core s/GiB", "core_s_per_gib", 2),
    Column("MB/s", "mb_per_s"),
    Column("process s/GiB", "process_s_per_gib", 2),
    Column("user s/GiB", "user_s_per_gib", 2),
    Column("sys s/GiB", "sys_s_per_gib", 2),
]
LARGE4_COLUMNS = [
    *LARGE_COLUMNS,
    Column("peak RSS MiB", "peak_rss_kib", 1, _MIB),
    Column("RSS growth MiB", "rss_growth_kib", 1, _MIB),
]
IDLE_COLUMNS = [
    Column("KiB/conn", "kib_per_conn", 2),
    Column("KiB/conn again", "kib_per_conn_this_round", 2),
    Column("RSS before MiB", "rss_baseline_kib", 1, _MIB),
    Column("RSS idle MiB", "rss_idle_kib", 1, _MIB),
    Column("RSS after close MiB", "rss_after_close_kib", 1, _MIB),
    Column("connections", "connections"),
    Column("server sockets added", "sockets_added"),
    Column("open s", "open_s", 2),
]
SCENARIO_TITLES = {
    "small-4k": "4 KiB file",
    "small-64k": "64 KiB file",
    "small-many": "1,000 distinct 4 KiB files",
    "ranges": "random 1 MiB ranges of the large file",
    "large-1": "1 download of the large file",
    "large-4": "4 concurrent downloads of the large file",
    "idle-10k": "idle keep-alive connections",
}


def scenario_columns(sid: str) -> list[Column]:
    """The columns of a scenario's table; the first is its headline (with ratios)."""
    if sid == "ranges":
        return RANGES_COLUMNS
    if sid == "large-1":
        return LARGE_COLUMNS
    if sid == "large-4":
        return LARGE4_COLUMNS
    if sid.startswith("idle"):
        return IDLE_COLUMNS
    return WRK_COLUMNS


def cell_status(result: dict[str, Any], sid: str) -> str | None:
    """Why a server's cell has no figures: "skipped", "error", "n/a" (the scenario does not
    apply to it), "—" (not run: an interrupted run); None when it has figures."""
    if result.get("skipped"):
        return "skipped"
    sc = result.get("scenarios") or {}
    if sid not in sc:
        return "error" if result.get("error") else "—"
    cell_ = sc[sid]
    if cell_ is None:
        return "n/a"
    if not isinstance(cell_, dict) or "error" in cell_:
        return "error"
    return None


def scenario_table(
    sid: str, results: Sequence[dict[str, Any]], references: Sequence[str] = REFERENCES
) -> str:
    """One row per server (servers the scenario does not apply to left out): the headline
    figure, its ratio to each reference server, then the other figures; each figure the
    median over rounds and its [min–max]."""
    cols = scenario_columns(sid)
    headline = cols[0]
    ref_values: dict[str, float | None] = {}
    for ref in references:
        r = next((x for x in results if x["id"] == ref), None)
        cell_ = (r or {}).get("scenarios", {}).get(sid) if r else None
        ref_values[ref] = _num(cell_.get(headline.key)) if isinstance(cell_, dict) else None
    shown_refs = [ref for ref in references if ref_values[ref] is not None]
    head = ["server", cols[0].title, *(f"{TIMES} {ref}" for ref in shown_refs)]
    head += [c.title for c in cols[1:]]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for result in results:
        status = cell_status(result, sid)
        if status == "n/a":
            continue
        if status is not None:
            lines.append("| " + " | ".join([result["name"], *[status] * (len(head) - 1)]) + " |")
            continue
        cell_ = result["scenarios"][sid]
        rng = cell_.get("range") or {}

        def show(c: Column, cell_: dict[str, Any] = cell_, rng: dict = rng) -> str:
            lo, hi = (rng.get(c.key) or [None, None])[:2]
            return spread(_num(cell_.get(c.key)), lo, hi, c.digits, c.scale)

        value = _num(cell_.get(headline.key))
        row = [result["name"], show(headline)]
        row += [fmt_ratio(ratio(value, ref_values[ref])) or "n/a" for ref in shown_refs]
        row += [show(c) for c in cols[1:]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render(data: dict[str, Any]) -> str:
    """The whole results.md from the results.json structure."""
    meta = data["meta"]
    results = data["servers"]
    scenario_ids = list(meta["scenarios"])
    pin = (
        f"pinned: server on CPU {meta['server_cpu']}, clients on CPU {meta['client_cpu']}"
        if meta["pinned"]
        else "not pinned"
    )
    m = meta["machine"]
    out = [
        f"# zerocopy-server load test{' (quick)' if meta['quick'] else ''}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']} · {m['date']} · {pin} · load average "
        f"{meta.get('load_average_at_start', 0):.2f} at start, "
        f"{meta.get('load_average_at_end', 0):.2f} at end",
        "",
        meta["settings_text"],
        "",
    ]
    for sid in scenario_ids:
        title = SCENARIO_TITLES.get(sid, sid)
        out += [f"## {sid}: {title}", "", scenario_table(sid, results)]
        na = [r["name"] for r in results if cell_status(r, sid) == "n/a"]
        if na:
            out += ["", f"Not measured here (does not apply): {', '.join(na)}."]
        out.append("")
    rss_rows = [
        f"| {r['name']} | {fmt_num(r['peak_rss_kib'] / 1024, 1)} |"
        for r in results
        if r.get("peak_rss_kib")
    ]
    if rss_rows:
        out += ["## peak RSS", "", "| server | peak RSS MiB |", "|---|---:|", *rss_rows, ""]
    notes = list(meta.get("notes") or [])
    if meta.get("interrupted"):
        notes.append("Interrupted: partial results (—: not run).")
    have = {r["id"] for r in results if not r.get("skipped") and not r.get("error")}
    refs = [ref for ref in REFERENCES if ref in have]
    if not refs:
        notes.append("No nginx figures in this run: no ratios.")
    else:
        notes.append(
            ", ".join(f"{TIMES} {ref}" for ref in refs)
            + ": the headline figure (the first column) over that server's in this run, "
            "medians (lower is better)."
        )
    notes.append(
        f"core {MICRO}s/req: the pinned server core's busy time (/proc/stat) per request: "
        f"the server process and the kernel's network work on that core (the headline); "
        f"process/user/sys {MICRO}s/req: the server processes' utime+stime, utime, stime "
        "(/proc/PID/stat). Resolution 10 ms of CPU per cell. MB = 10^6 bytes."
    )
    notes.append(
        "peak RSS: VmHWM of the serving process up to its first idle cell, and the peak "
        "sampled during large-4; large-4's RSS growth: that peak minus the RSS when the "
        "downloads began (after an idle-10k round a server may still hold what its idle "
        "connections took, which its peak RSS then includes)."
    )
    if any(s.startswith("idle") for s in scenario_ids):
        notes.append(
            "idle: KiB/conn = (RSS with the connections held - RSS before the server's first "
            "idle cell) / connections; KiB/conn again: against the RSS before that round "
            "(after round 1 a server reuses memory it kept); RSS before MiB: before round 1."
        )
    for r in results:
        if r.get("note"):
            notes.append(r["note"])
        if r.get("skipped"):
            notes.append(f"{r['name']}: skipped ({r['skipped']}).")
        if r.get("error"):
            notes.append(f"{r['name']}: {r['error']}")
        for sid, d in (r.get("scenarios") or {}).items():
            if not isinstance(d, dict):
                continue
            for err in d.get("errors") or ([d["error"]] if "error" in d else []):
                notes.append(f"{r['name']}, {sid}: {err}")
            if d.get("non_2xx_3xx") or any((d.get("socket_errors") or {}).values()):
                notes.append(
                    f"{r['name']}, {sid}: {d.get('non_2xx_3xx', 0):.0f} non-2xx/3xx responses, "
                    f"socket errors {d.get('socket_errors')}."
                )
            for rnd in d.get("rounds") or []:
                if not isinstance(rnd, dict):
                    continue
                held, conns = rnd.get("sockets_added"), rnd.get("connections") or 0
                if held is not None and held < 0.98 * conns:
                    notes.append(
                        f"{r['name']}, {sid}, round {rnd.get('round')}: the server held "
                        f"{held:,} more sockets for {conns:,} connections: it closed some."
                    )
                if rnd.get("failed") or rnd.get("client_note"):
                    notes.append(
                        f"{r['name']}, {sid}, round {rnd.get('round')}: "
                        f"{rnd.get('connections')} of {rnd.get('connections_wanted')} "
                        f"connections held; {rnd.get('first_error') or rnd.get('client_note')}"
                    )
    out += [f"- {n}" for n in notes]
    out += ["", f"Wall time: {meta.get('wall_seconds', 0):.0f} s.", ""]
    return "\n".join(out)


def simple_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain Markdown table of dicts sharing keys (floats with 2 decimals)."""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append(
            "| "
            + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )
    return "\n".join(out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


CHART = [
    ("small-4k", "small-4k.core_us_per_req", f"4 KiB: core {MICRO}s/req (lower is better)"),
    ("small-64k", "small-64k.core_us_per_req", f"64 KiB: core {MICRO}s/req"),
    ("small-many", "small-many.core_us_per_req", f"1,000{TIMES}4 KiB: core {MICRO}s/req"),
    ("small-4k", "small-4k.rps", "4 KiB: req/s"),
    ("ranges", "ranges.mb_per_s", "1 MiB ranges, c16: MB/s"),
    ("large-1", "large-1.mb_per_s", "1{times}{large}: MB/s"),
    ("large-4", "large-4.mb_per_s", "4{times}{large}: MB/s"),
    # What zero-copy saves shows here, not in MB/s: the server core's time per GiB.
    ("large-1", "large-1.core_s_per_gib", "1{times}{large}: server core s/GiB (lower is better)"),
    ("idle-10k", "idle-10k.kib_per_conn", "KiB per idle connection (lower is better)"),
]


def write_png(path: Path, data: dict[str, Any]) -> bool:
    """One horizontal bar subplot per scenario; False (with a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "note: matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr
        )
        return False
    meta = data["meta"]
    ran = [c for c in CHART if c[0] in meta["scenarios"]]
    results = [r for r in data["servers"] if not r.get("skipped")]
    if not ran or not results:
        return False
    ncols = min(3, len(ran))
    nrows = math.ceil(len(ran) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(5.2 * ncols, 0.45 * len(results) * nrows + 1.6 * nrows),
        squeeze=False,
    )
    names = [r["id"] for r in results]
    for ax, (_, key, title) in zip(axes.flat, ran, strict=False):
        raw = [figures(r).get(key) for r in results]
        values = [v or 0.0 for v in raw]
        bars = ax.barh(
            names, values, color=["#d62728" if n == REFERENCE else "#1f77b4" for n in names]
        )
        ax.invert_yaxis()
        ax.set_title(title.format(large=meta["large_title"], times=TIMES), fontsize=10)
        ax.tick_params(labelsize=8)
        for bar, v, r in zip(bars, values, raw, strict=True):
            if r is None:
                ax.text(0, bar.get_y() + bar.get_height() / 2, " n/a", va="center", fontsize=7)
            elif v:
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f" {v:,.0f}" if v >= 100 else f" {v:.2f}",
                    va="center",
                    fontsize=7,
                )
        ax.margins(x=0.25)
    for ax in list(axes.flat)[len(ran) :]:
        ax.axis("off")
    m = meta["machine"]
    fig.suptitle(
        f"zerocopy-server load test {m['date']} · {m['cores']} cores · "
        f"{'pinned' if meta['pinned'] else 'not pinned'}{' · quick' if meta['quick'] else ''}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
