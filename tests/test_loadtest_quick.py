"""The load-test harness: wrk parsing, table formatting and ratios, and one quick real run."""

# ruff: noqa: RUF001  (the tables hold the multiplication sign on purpose)

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import report, scenarios, servers
from loadtest.clients import parse_bytes, parse_time, parse_wrk

REPO = Path(__file__).resolve().parent.parent

WRK_OK = """\
Running 1s test @ http://127.0.0.1:45057/f4k.bin
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.68ms    2.10ms  12.75ms   85.04%
    Req/Sec    53.06k     7.94k   61.42k    80.00%
  Latency Distribution
     50%  476.00us
     75%    2.57ms
     90%    4.51ms
     99%    8.67ms
  52895 requests in 1.00s, 219.48MB read
Requests/sec:  52669.78
Transfer/sec:    218.55MB
"""

WRK_ERRORS = """\
Running 10s test @ http://127.0.0.1:8080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.01ms    7.11ms  74.13ms   79.59%
    Req/Sec     0.98k   166.72     1.19k    60.00%
  Latency Distribution
     50%   15.12ms
     75%   18.40ms
     90%   20.95ms
     99%     1.02s
  9990 requests in 1.00m, 9.76GB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:    974.79
Transfer/sec:      0.95GB
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("476.00us", 476e-6), ("2.57ms", 2.57e-3), ("1.00s", 1.0), ("1.50m", 90.0), ("2h", 7200.0)],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("12B", 12), ("1.50KB", 1536), ("219.48MB", 219.48 * 2**20), ("0.95GB", 0.95 * 2**30)],
)
def test_parse_bytes(text, nbytes):
    assert parse_bytes(text) == pytest.approx(nbytes)


@pytest.mark.parametrize("bad", ["", "12", "1.0 ms", "fast"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError):
        parse_time(bad)


def test_parse_wrk_summary_and_latency():
    r = parse_wrk(WRK_OK)
    assert (r.requests, r.seconds, r.rps) == (52895, 1.0, 52669.78)
    assert r.latency == pytest.approx({"50": 476e-6, "75": 2.57e-3, "90": 4.51e-3, "99": 8.67e-3})
    assert r.transfer_per_s == pytest.approx(218.55 * 2**20)
    assert r.bytes_read == pytest.approx(219.48 * 2**20)
    assert (r.non_2xx_3xx, r.socket_errors, r.errors) == (0, {}, 0)
    d = r.as_dict()
    assert d["p50_ms"] == pytest.approx(0.476) and d["p99_ms"] == pytest.approx(8.67)


def test_parse_wrk_errors_minutes_and_seconds():
    r = parse_wrk(WRK_ERRORS)
    assert (r.requests, r.seconds, r.rps) == (9990, 60.0, 974.79)
    assert r.latency["99"] == pytest.approx(1.02)
    assert r.non_2xx_3xx == 12
    assert r.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 7}
    assert r.errors == 22


@pytest.mark.parametrize("text", ["", "unable to connect to 127.0.0.1:1 Connection refused"])
def test_parse_wrk_rejects_no_summary(text):
    with pytest.raises(ValueError):
        parse_wrk(text)


@pytest.mark.parametrize(
    ("value", "reference", "expected"),
    [
        (24100, 57381, 0.42),
        (10, 10, 1.0),
        (3, 0, None),
        (None, 5, None),
        (5, None, None),
        (float("nan"), 5, None),
    ],
)
def test_ratio(value, reference, expected):
    r = report.ratio(value, reference)
    assert r == (pytest.approx(expected, abs=0.005) if expected is not None else None)


@pytest.mark.parametrize(
    ("value", "reference", "digits", "text"),
    [
        (24100, 57381, 0, "24,100 (0.42×)"),
        (24100.4, None, 0, "24,100"),
        (0.213, 0.5, 2, "0.21 (0.43×)"),
        (1234.5, 100, 0, "1,234 (12.3×)"),  # round-half-even on .5
        (None, 100, 0, "n/a"),
        (7, 0, 0, "7"),
    ],
)
def test_cell(value, reference, digits, text):
    assert report.cell(value, reference, digits) == text


@pytest.mark.parametrize(
    ("a", "b", "text"), [(0.476, 8.67, "0.48 / 8.67"), (None, 1.0, "n/a"), (1.0, None, "n/a")]
)
def test_fmt_pair(a, b, text):
    assert report.fmt_pair(a, b) == text


def _result(sid: str, rps: float, mbs: float, proc_s: float, core_s: float | None) -> dict:
    return {
        "id": sid,
        "name": sid,
        "peak_rss_kib": 10240,
        "scenarios": {
            "small-4k": {"rps": rps, "p50_ms": 1.0, "p99_ms": 9.0},
            "large-1": {
                "mb_per_s": mbs,
                "bytes": 2**30,
                "process_cpu_s": proc_s,
                "core_busy_s": core_s,
            },
            "large-4": {
                "mb_per_s": mbs * 2,
                "bytes": 3 * 2**30,
                "process_cpu_s": 3 * proc_s,
                "core_busy_s": None if core_s is None else 3 * core_s,
                "peak_rss_kib": 5120,
            },
        },
    }


def test_figures_combine_the_large_scenarios():
    f = report.figures(_result("x", 1000.0, 1500.0, 0.5, 0.75))
    assert f["small-4k.rps"] == 1000.0
    assert f["large-1.mb_per_s"] == 1500.0 and f["large-4.mb_per_s"] == 3000.0
    assert f["large.process_s_per_gib"] == pytest.approx(0.5)  # 2 s over 4 GiB
    assert f["large.core_s_per_gib"] == pytest.approx(0.75)
    assert (f["rss.peak_mib"], f["rss.large4_mib"]) == (10.0, 5.0)
    assert f["small-64k.rps"] is None and f["ranges.mb_per_s"] is None
    assert report.figures(_result("x", 1, 1, 0.5, None))["large.core_s_per_gib"] is None


def test_markdown_table_rows_ratios_and_overrides():
    cols = report.columns(["small-4k", "large-1", "large-4"])
    titles = [c.title for c in cols]
    assert titles == [
        "4 KiB req/s",
        "4 KiB p50/p99 ms",
        "1×1 GiB MB/s",
        "4×1 GiB MB/s",
        "process s/GiB",
        "core s/GiB",
        "peak RSS MiB",
        "RSS 4×1 GiB MiB",
    ]
    ours = report.figures(_result("ours", 24100, 1000, 0.6, 0.9))
    ref = report.figures(_result("nginx", 57381, 2000, 0.3, 0.6))
    table = report.markdown_table(
        [("ours", ours), ("nginx", ref), ("gone", None)],
        cols,
        ref,
        lambda name, c: "n/a" if name == "nginx" and c.title == "core s/GiB" else None,
    ).splitlines()
    assert table[0].startswith("| server | 4 KiB req/s | 4 KiB p50/p99 ms |")
    assert table[1] == "|---" + "|---:" * len(cols) + "|"
    assert table[2] == (
        "| ours | 24,100 (0.42×) | 1.00 / 9.00 | 1,000 (0.50×) | 2,000 (0.50×) "
        "| 0.60 (2.00×) | 0.90 (1.50×) | 10.0 (1.00×) | 5.0 (1.00×) |"
    )
    assert "| n/a |" in table[3]
    assert table[4] == "| gone |" + " skipped |" * len(cols)


@pytest.mark.parametrize(
    ("result", "scenario", "text"),
    [
        ({"scenarios": {"small-4k": {"rps": 1.0}}}, "small-4k", None),
        ({"scenarios": {"small-4k": None}}, "small-4k", "n/a"),
        ({"scenarios": {"small-4k": {"error": "boom"}}}, "small-4k", "error"),
        ({"scenarios": {}}, "small-4k", "—"),
        ({"skipped": "nginx is not installed"}, "small-4k", "skipped"),
        ({"error": "did not start", "scenarios": {}}, "large", "error"),
        ({"scenarios": {"large-1": {"error": "x"}, "large-4": {"bytes": 1}}}, "large", None),
        ({"scenarios": {"large-1": {"error": "x"}, "large-4": {"error": "y"}}}, "large", "error"),
        ({"scenarios": {}}, "", None),
    ],
)
def test_cell_status(result, scenario, text):
    col = report.Column("t", ("k",), scenario=scenario)
    assert report.cell_status(result, col) == text


def test_columns_follow_the_scenarios_that_ran():
    assert [c.title for c in report.columns(["ranges"])] == [
        "ranges req/s",
        "ranges MB/s",
        "peak RSS MiB",
    ]


def test_render_names_machine_pinning_and_missing_reference():
    data = {
        "meta": {
            "machine": {
                "date": "2026-01-01 10:00",
                "cpu_model": "Some CPU",
                "cores": 2,
                "kernel": "6.1.0",
                "python": "3.11.7",
            },
            "quick": True,
            "pinned": True,
            "server_cpu": 0,
            "client_cpu": 1,
            "scenarios": ["small-4k", "large-1", "large-4"],
            "large_title": "256 MiB",
            "settings_text": "settings",
            "wall_seconds": 12.0,
        },
        "servers": [
            _result("zc-uvloop", 24100, 1000, 0.6, 0.9),
            {"id": "nginx", "name": "nginx", "skipped": "nginx is not installed"},
        ],
    }
    md = report.render(data)
    assert "Some CPU, 2 cores, Linux 6.1.0, Python 3.11.7" in md
    assert "pinned: server on CPU 0, clients on CPU 1" in md
    assert "2026-01-01" in md
    assert "| zc-uvloop | 24,100 | 1.00 / 9.00 |" in md  # no reference: no ratio
    assert "| nginx | skipped |" in md
    assert "nginx: skipped (nginx is not installed)" in md
    assert "No nginx figures in this run" in md


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        (None, [s.id for s in servers.SERVERS]),
        ("nginx,zc-uvloop", ["nginx", "zc-uvloop"]),
        ("zerocopy buffered, raw-sendfile", ["zc-buffered", "raw-sendfile"]),
    ],
)
def test_select_servers(spec, ids):
    assert [s.id for s in servers.select(spec)] == ids


def test_select_rejects_unknown_names():
    with pytest.raises(ValueError):
        servers.select("apache")
    with pytest.raises(ValueError):
        scenarios.select("small-4k,huge")


def test_select_scenarios_keeps_standard_order():
    assert [s.id for s in scenarios.select("large-1,small-4k")] == ["small-4k", "large-1"]


@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("curl") is None, reason="needs wrk and curl"
)
def test_quick_run_writes_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest",
            "--quick",
            "--servers",
            "zc-uvloop,raw-sendfile",
            "--scenarios",
            "small-4k,ranges,large-1,large-4",
            "--large-mib",
            "128",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    by_id = {r["id"]: r for r in data["servers"]}
    zc, raw = by_id["zc-uvloop"]["scenarios"], by_id["raw-sendfile"]["scenarios"]
    assert zc["small-4k"]["rps"] > 0 and zc["small-4k"]["p99_ms"] > 0
    assert zc["ranges"]["rps"] > 0 and zc["ranges"]["mb_per_s"] > 0
    for sc in (zc, raw):
        assert sc["large-1"]["mb_per_s"] > 0 and sc["large-4"]["mb_per_s"] > 0
        assert sc["large-1"]["process_s_per_gib"] > 0
        assert sc["large-4"]["peak_rss_kib"] > 0
    assert raw["small-4k"] is None and raw["ranges"] is None  # large-file scenarios only
    assert by_id["zc-uvloop"]["peak_rss_kib"] > 0
    md = (out / "results.md").read_text()
    assert "| server | 4 KiB req/s |" in md
    assert "| zerocopy uvloop+sendfile | " in md and "| raw os.sendfile | n/a |" in md
    assert md.strip() in proc.stdout
