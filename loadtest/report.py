"""The outputs: a Markdown table (ratios to nginx), a JSON file of raw figures, a PNG chart."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMES = "\u00d7"  # the multiplication sign, as in "0.42 times"
REFERENCE = "nginx"  # ratios are to this server's figures in the same run

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


def _get(d: dict[str, Any] | None, key: str) -> float | None:
    if not isinstance(d, dict) or "error" in d:
        return None
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def figures(result: dict[str, Any]) -> Figures:
    """Flatten one server's raw result into the figures the table and chart show."""
    sc: dict[str, Any] = result.get("scenarios") or {}
    out: Figures = {}
    for sid in ("small-4k", "small-64k", "small-many", "ranges"):
        out[f"{sid}.rps"] = _get(sc.get(sid), "rps")
        out[f"{sid}.p50_ms"] = _get(sc.get(sid), "p50_ms")
        out[f"{sid}.p99_ms"] = _get(sc.get(sid), "p99_ms")
    out["ranges.mb_per_s"] = _get(sc.get("ranges"), "mb_per_s")
    for sid in ("large-1", "large-4"):
        out[f"{sid}.mb_per_s"] = _get(sc.get(sid), "mb_per_s")
    large = [sc[s] for s in ("large-1", "large-4") if _get(sc.get(s), "bytes")]
    nbytes = sum(d["bytes"] for d in large)
    gib = nbytes / 2**30
    out["large.process_s_per_gib"] = (
        sum(d["process_cpu_s"] for d in large) / gib if large and gib else None
    )
    cores = [d.get("core_busy_s") for d in large]
    out["large.core_s_per_gib"] = (
        sum(cores) / gib if large and gib and all(c is not None for c in cores) else None
    )
    rss = result.get("peak_rss_kib")
    out["rss.peak_mib"] = rss / 1024 if rss else None
    rss4 = _get(sc.get("large-4"), "peak_rss_kib")
    out["rss.large4_mib"] = rss4 / 1024 if rss4 else None
    return out


@dataclass(frozen=True)
class Column:
    title: str
    keys: tuple[str, ...]  # one key: a figure (with ratio); two: a "p50 / p99" pair
    digits: int = 0
    with_ratio: bool = True
    scenario: str = ""  # the scenario the column belongs to ("" for always shown)


def columns(scenario_ids: Sequence[str], large_title: str = "1 GiB") -> list[Column]:
    """The table's columns for the scenarios that ran, in order."""
    cols: list[Column] = []
    small_titles = {"small-4k": "4 KiB", "small-64k": "64 KiB", "small-many": f"1,000{TIMES}4 KiB"}
    for sid, title in small_titles.items():
        cols.append(Column(f"{title} req/s", (f"{sid}.rps",), scenario=sid))
        cols.append(
            Column(f"{title} p50/p99 ms", (f"{sid}.p50_ms", f"{sid}.p99_ms"), 2, False, sid)
        )
    cols.append(Column(f"1{TIMES}{large_title} MB/s", ("large-1.mb_per_s",), scenario="large-1"))
    cols.append(Column(f"4{TIMES}{large_title} MB/s", ("large-4.mb_per_s",), scenario="large-4"))
    cols.append(Column("process s/GiB", ("large.process_s_per_gib",), 2, scenario="large"))
    cols.append(Column("core s/GiB", ("large.core_s_per_gib",), 2, scenario="large"))
    cols.append(Column("ranges req/s", ("ranges.rps",), scenario="ranges"))
    cols.append(Column("ranges MB/s", ("ranges.mb_per_s",), with_ratio=False, scenario="ranges"))
    cols.append(Column("peak RSS MiB", ("rss.peak_mib",), 1))
    cols.append(
        Column(f"RSS 4{TIMES}{large_title} MiB", ("rss.large4_mib",), 1, scenario="large-4")
    )
    ran = set(scenario_ids)
    if ran & {"large-1", "large-4"}:
        ran.add("large")
    return [c for c in cols if not c.scenario or c.scenario in ran]


def render_cell(col: Column, figs: Figures, ref: Figures | None) -> str:
    if len(col.keys) == 2:
        return fmt_pair(figs.get(col.keys[0]), figs.get(col.keys[1]), col.digits)
    key = col.keys[0]
    reference = ref.get(key) if ref is not None and col.with_ratio else None
    return cell(figs.get(key), reference, col.digits)


def markdown_table(
    rows: Sequence[tuple[str, Figures | None]],
    cols: Sequence[Column],
    reference: Figures | None = None,
    na: Callable[[str, Column], str | None] | None = None,
) -> str:
    """One row per server: (name, figures or None for a skipped server).

    ``na(name, column)`` may override a cell's text (e.g. "n/a", "error", "skipped").
    """
    head = ["server", *(c.title for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(cols) + "|"]
    for name, figs in rows:
        cells = []
        for c in cols:
            override = na(name, c) if na else None
            if override is not None:
                cells.append(override)
            elif figs is None:
                cells.append("skipped")
            else:
                cells.append(render_cell(c, figs, reference))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def cell_status(result: dict[str, Any], col: Column) -> str | None:
    """ "n/a" for a scenario this server does not take part in, "error" for a failed one."""
    if result.get("skipped"):
        return "skipped"
    if result.get("error"):
        return "error"
    sc = result.get("scenarios") or {}
    ids = ["large-1", "large-4"] if col.scenario == "large" else [col.scenario]
    if not col.scenario:
        return None
    present = [sc[i] for i in ids if i in sc]
    if not present:
        return "—"  # not run (an interrupted run)
    if all(p is None for p in present):
        return "n/a"
    if all(isinstance(p, dict) and "error" in p for p in present):
        return "error"
    return None


def render(data: dict[str, Any]) -> str:
    """The whole results.md from the results.json structure."""
    meta = data["meta"]
    results = data["servers"]
    scenario_ids = [s for s in meta["scenarios"]]
    large_title = meta["large_title"]
    cols = columns(scenario_ids, large_title)
    ref_result = next((r for r in results if r["id"] == REFERENCE and not r.get("skipped")), None)
    ref = figures(ref_result) if ref_result and not ref_result.get("error") else None
    by_name = {r["name"]: r for r in results}
    rows = [(r["name"], None if r.get("skipped") else figures(r)) for r in results]
    table = markdown_table(rows, cols, ref, lambda name, c: cell_status(by_name[name], c))
    pin = (
        f"pinned: server on CPU {meta['server_cpu']}, clients on CPU {meta['client_cpu']}"
        if meta["pinned"]
        else "not pinned"
    )
    m = meta["machine"]
    out = [
        f"# zerocopy-server load test{' (quick)' if meta['quick'] else ''}",
        "",
        f"{m['date']} · {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']} · {pin} · load average {meta.get('load_average_at_start', 0):.2f}"
        " at start",
        "",
        meta["settings_text"],
        "",
        table,
        "",
    ]
    notes = []
    if meta.get("interrupted"):
        notes.append("Interrupted: partial results (—: not run).")
    if ref is None:
        notes.append("No nginx figures in this run: no ratios.")
    else:
        notes.append(f"({TIMES}): ratio to nginx in this run (higher is better for req/s and MB/s,")
        notes[-1] += " lower for s/GiB, latency and RSS)."
    notes.append(
        "MB = 10^6 bytes. process s/GiB: the server's user+sys time (/proc/PID/stat) per GiB "
        "served in the large-file scenarios; core s/GiB: the pinned server core's busy time "
        "(/proc/stat), which adds the kernel's network work done on that core."
    )
    rss_note = "peak RSS: VmHWM at the end of the server's run (the highest across a reset)"
    if "large-4" in scenario_ids:
        rss_note += f"; RSS 4{TIMES}{large_title}: the peak during the four concurrent downloads"
    notes.append(rss_note + ".")
    for r in results:
        if r.get("skipped"):
            notes.append(f"{r['name']}: skipped ({r['skipped']}).")
        if r.get("error"):
            notes.append(f"{r['name']}: {r['error']}")
        for sid, d in (r.get("scenarios") or {}).items():
            if isinstance(d, dict) and "error" in d:
                notes.append(f"{r['name']}, {sid}: {d['error']}")
            elif isinstance(d, dict) and (
                d.get("non_2xx_3xx") or any((d.get("socket_errors") or {}).values())
            ):
                notes.append(
                    f"{r['name']}, {sid}: {d.get('non_2xx_3xx', 0)} non-2xx/3xx responses, "
                    f"socket errors {d.get('socket_errors')}."
                )
    if any(not r.get("scenarios", {}).get("small-4k", True) for r in results):
        notes.append(
            "n/a: the raw os.sendfile server takes part in the large-file scenarios only; it "
            "serves one connection at a time, so its 4-download figure is four in a row."
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
    ("small-4k", "small-4k.rps", "4 KiB: req/s"),
    ("small-64k", "small-64k.rps", "64 KiB: req/s"),
    ("small-many", "small-many.rps", f"1,000{TIMES}4 KiB: req/s"),
    ("ranges", "ranges.mb_per_s", "1 MiB ranges, c16: MB/s"),
    ("large-1", "large-1.mb_per_s", "1{times}{large}: MB/s"),
    ("large-4", "large-4.mb_per_s", "4{times}{large}: MB/s"),
    # What zero-copy saves shows here, not in MB/s: the server core's time per GiB.
    ("large-1", "large.core_s_per_gib", "large files: server core s/GiB (lower is better)"),
    ("large-4", "rss.large4_mib", "RSS under 4{times}{large}: MiB (lower is better)"),
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
