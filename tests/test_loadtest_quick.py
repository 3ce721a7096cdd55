"""The load-test harness: wrk parsing, table formatting and ratios, and one quick real run."""

# ruff: noqa: RUF001  (the tables hold the multiplication sign on purpose)

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from loadtest import clients, idle, report, rounds, scenarios, servers
from loadtest.__main__ import build_parser
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


def _cell(**figs: float) -> dict:
    """An aggregated cell: medians at the top, ranges under "range"."""
    out: dict = {"n_rounds": 3, "rounds": [], "range": {}}
    for k, v in figs.items():
        out[k] = v
        out["range"][k] = [v * 0.9, v * 1.1]
    return out


def _result(sid: str, core_us: float, rps: float = 20000.0) -> dict:
    return {
        "id": sid,
        "name": sid,
        "peak_rss_kib": 10240,
        "scenarios": {
            "small-4k": _cell(
                core_us_per_req=core_us,
                rps=rps,
                p50_ms=1.0,
                p99_ms=9.0,
                process_us_per_req=core_us / 2,
                user_us_per_req=core_us / 4,
                sys_us_per_req=core_us / 4,
            ),
            "idle-10k": _cell(kib_per_conn=2.0, rss_baseline_kib=10240, rss_idle_kib=30720),
        },
    }


def test_spread_shows_the_median_and_its_range():
    assert report.spread(12.34, 11.9, 13.04, 1) == "12.3 [11.9–13.0]"
    assert report.spread(24100, 24100, 24100) == "24,100"  # one value: no range
    assert report.spread(5.0, None, None, 1) == "5.0"
    assert report.spread(None, 1, 2) == "n/a"
    assert report.spread(2048, 1024, 4096, 1, 1 / 1024) == "2.0 [1.0–4.0]"


def test_figures_are_the_medians_flat():
    f = report.figures(_result("x", 30.0))
    assert f["small-4k.core_us_per_req"] == 30.0 and f["small-4k.rps"] == 20000.0
    assert f["idle-10k.kib_per_conn"] == 2.0
    assert f["rss.peak_mib"] == 10.0
    assert "small-4k.range" not in f and "small-64k.rps" not in f


def test_scenario_table_headline_ratios_to_both_nginx():
    results = [
        _result("zc-uvloop", 30.0),
        _result("nginx", 15.0),
        _result("nginx-ofc", 12.0),
        {"id": "gone", "name": "gone", "skipped": "not installed"},
        {"id": "raw", "name": "raw", "scenarios": {"small-4k": None}},
    ]
    lines = report.scenario_table("small-4k", results).splitlines()
    assert lines[0] == (
        "| server | core µs/req | × nginx | × nginx-ofc | req/s | p50 ms | p99 ms "
        "| process µs/req | user µs/req | sys µs/req |"
    )
    assert lines[1] == "|---" + "|---:" * 9 + "|"
    assert lines[2] == (
        "| zc-uvloop | 30.0 [27.0–33.0] | 2.00× | 2.50× | 20,000 [18,000–22,000] "
        "| 1.00 [0.90–1.10] | 9.00 [8.10–9.90] | 15.0 [13.5–16.5] | 7.5 [6.8–8.2] "
        "| 7.5 [6.8–8.2] |"
    )
    assert lines[3].startswith("| nginx | 15.0 [13.5–16.5] | 1.00× | 1.25× |")
    assert lines[5] == "| gone |" + " skipped |" * 9
    assert len(lines) == 6  # raw: the scenario does not apply, no row


def test_scenario_table_without_references_has_no_ratio_columns():
    lines = report.scenario_table("idle-10k", [_result("zc-uvloop", 30.0)]).splitlines()
    assert lines[0].startswith(
        "| server | KiB/conn | KiB/conn again | RSS before MiB | RSS idle MiB |"
    )
    assert lines[2].startswith("| zc-uvloop | 2.00 [1.80–2.20] | n/a | 10.0 [9.0–11.0] |")


@pytest.mark.parametrize(
    ("result", "sid", "text"),
    [
        ({"scenarios": {"small-4k": {"rps": 1.0}}}, "small-4k", None),
        ({"scenarios": {"small-4k": None}}, "small-4k", "n/a"),
        ({"scenarios": {"small-4k": {"error": "boom"}}}, "small-4k", "error"),
        ({"scenarios": {}}, "small-4k", "—"),
        ({"skipped": "nginx is not installed"}, "small-4k", "skipped"),
        ({"error": "did not start", "scenarios": {}}, "large-1", "error"),
    ],
)
def test_cell_status(result, sid, text):
    assert report.cell_status(result, sid) == text


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
            "rounds": 1,
            "pinned": True,
            "server_cpu": 0,
            "client_cpu": 1,
            "scenarios": ["small-4k", "idle-10k"],
            "large_title": "256 MiB",
            "settings_text": "settings",
            "wall_seconds": 12.0,
        },
        "servers": [
            _result("zc-uvloop", 30.0),
            {"id": "nginx", "name": "nginx", "skipped": "nginx is not installed"},
        ],
    }
    md = report.render(data)
    assert md.startswith("# zerocopy-server load test (quick)")
    assert "Machine: Some CPU, 2 cores, Linux 6.1.0, Python 3.11.7" in md
    assert "pinned: server on CPU 0, clients on CPU 1" in md
    assert "## small-4k: 4 KiB file" in md and "## idle-10k:" in md
    assert "| zc-uvloop | 30.0 [27.0–33.0] | 20,000" in md  # no reference: no ratio
    assert "| nginx | skipped |" in md
    assert "nginx: skipped (nginx is not installed)" in md
    assert "No nginx figures in this run" in md


# --- rounds: the interleaved schedule and the aggregation over rounds -------------------


def test_schedule_interleaves_servers_round_by_round():
    plan = rounds.schedule(2, ["s1", "s2"], ["A", "B", "C"])
    assert [f"{r}{sc}{sv}" for r, sc, sv in plan] == [
        "1s1A", "1s1B", "1s1C", "1s2A", "1s2B", "1s2C",
        "2s1A", "2s1B", "2s1C", "2s2A", "2s2B", "2s2C",
    ]  # fmt: skip


def test_schedule_leaves_out_cells_that_do_not_apply():
    plan = rounds.schedule(
        2, ["small", "large"], ["A", "floor"], lambda sc, sv: sv != "floor" or sc == "small"
    )
    assert plan == [
        (1, "small", "A"), (1, "small", "floor"), (1, "large", "A"),
        (2, "small", "A"), (2, "small", "floor"), (2, "large", "A"),
    ]  # fmt: skip
    assert rounds.schedule(0, ["s"], ["A"]) == []


def test_aggregate_medians_ranges_and_sums():
    runs = [
        {"rps": 100.0, "core_us_per_req": 30.0, "non_2xx_3xx": 1, "round": 1, "name": "x",
         "socket_errors": {"read": 1}},
        {"rps": 300.0, "core_us_per_req": 10.0, "non_2xx_3xx": 0, "round": 2, "name": "x",
         "socket_errors": {"read": 2}},
        {"rps": 200.0, "core_us_per_req": 20.0, "non_2xx_3xx": 2, "round": 3, "name": "x"},
    ]  # fmt: skip
    agg = rounds.aggregate(runs)
    assert agg["rps"] == 200.0 and agg["range"]["rps"] == [100.0, 300.0]
    assert agg["core_us_per_req"] == 20.0 and agg["range"]["core_us_per_req"] == [10.0, 30.0]
    assert agg["non_2xx_3xx"] == 3  # a count: added up
    assert agg["socket_errors"] == {"read": 3}
    assert "round" not in agg and "name" not in agg
    assert agg["n_rounds"] == 3 and agg["rounds"] == runs and "error" not in agg


def test_aggregate_even_rounds_and_failed_rounds():
    agg = rounds.aggregate([{"rps": 1.0}, {"error": "boom"}, {"rps": 4.0}, {"rps": None}])
    # the round with no rps cannot make a median: rps is left out rather than biased
    assert "rps" not in agg and agg["errors"] == ["boom"] and agg["n_rounds"] == 3
    agg = rounds.aggregate([{"rps": 1.0}, {"error": "boom"}, {"rps": 4.0}])
    assert agg["rps"] == 2.5 and agg["range"]["rps"] == [1.0, 4.0]
    failed = rounds.aggregate([{"error": "a"}, {"error": "b"}])
    assert failed["error"] == "a" and failed["n_rounds"] == 0
    assert rounds.aggregate([])["error"] == "no round ran"


# --- browser-like heads ------------------------------------------------------------------


def test_browser_heads_are_eight_fields_with_host():
    names = [n for n, _ in clients.BROWSER_HEADS]
    assert len(names) + 1 == 8  # wrk adds Host
    for name in ("User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Referer"):
        assert name in names
    heads = dict(clients.BROWSER_HEADS)
    assert "Firefox/" in heads["User-Agent"]
    assert heads["Accept-Encoding"] == "gzip, deflate, br"
    assert heads["Connection"] == "keep-alive"
    assert any(n.startswith("Sec-Fetch-") or n == "Upgrade-Insecure-Requests" for n in names)


def test_wrk_command_carries_the_heads():
    args = clients.head_args(clients.BROWSER_HEADS)
    assert args[0::2] == ["-H"] * len(clients.BROWSER_HEADS)
    assert args[1::2] == [f"{n}: {v}" for n, v in clients.BROWSER_HEADS]
    cmd = clients.wrk_command(
        "http://x/", 1, 50, clients.MANY_LUA, ("5",), heads=clients.BROWSER_HEADS
    )
    assert cmd[cmd.index("-s") - len(args) : cmd.index("-s")] == args
    assert cmd[-2:] == ["--", "5"]
    assert "-H" not in clients.wrk_command("http://x/", 1, 50)
    assert scenarios.DEFAULT.heads == clients.BROWSER_HEADS
    assert scenarios.QUICK.heads == clients.BROWSER_HEADS


def test_ranges_lua_copies_the_heads():
    text = (REPO / "loadtest" / "ranges.lua").read_text()
    assert "pairs(wrk.headers)" in text


def test_plain_heads_option():
    assert build_parser().parse_args(["--plain-heads"]).plain_heads is True
    args = build_parser().parse_args(["--rounds", "5", "--idle", "300"])
    assert (args.plain_heads, args.rounds, args.idle) == (False, 5, 300)


# --- idle connections ------------------------------------------------------------------


def test_kib_per_connection():
    assert idle.kib_per_connection(30_000, 70_000, 10_000) == 4.0
    assert idle.kib_per_connection(5_000, 5_000, 2_000) == 0.0
    assert idle.kib_per_connection(100, 90, 10) == -1.0  # RSS can shrink: kept as measured
    assert idle.kib_per_connection(100, 200, 0) is None


def test_fit_count_keeps_a_margin_of_fds():
    assert idle.fit_count(10_000, 20_000) == 10_000
    assert idle.fit_count(10_000, 1_024) == 1_024 - idle.FD_MARGIN
    assert idle.fit_count(10, 50) == 0


# --- peers -------------------------------------------------------------------------------


def test_new_peers_are_in_the_default_run():
    ids = [s.id for s in servers.SERVERS]
    for peer in ("nginx", "nginx-ofc", "granian", "floor"):
        assert peer in ids
    floor, granian = servers.by_id()["floor"], servers.by_id()["granian"]
    assert (floor.small_files, floor.ranges, floor.large) == (True, False, False)
    assert (granian.ranges, granian.url_prefix) == (False, "/static")
    running = servers.Running(granian, None, 8080, Path("log"), [])  # type: ignore[arg-type]
    assert running.url("f4k.bin") == "http://127.0.0.1:8080/static/f4k.bin"
    assert running.path("many") == "/static/many"
    plain = servers.Running(floor, None, 8080, Path("log"), [])  # type: ignore[arg-type]
    assert plain.url("/f4k.bin") == "http://127.0.0.1:8080/f4k.bin"


def test_nginx_ofc_is_the_same_config_plus_open_file_cache(tmp_path):
    plain = servers.nginx_conf(tmp_path, 8080, tmp_path / "root")
    ofc = servers.nginx_conf(tmp_path, 8080, tmp_path / "root", open_file_cache=True)
    assert "open_file_cache" not in plain
    for line in (
        "open_file_cache max=10000 inactive=60s;",
        "open_file_cache_valid 60s;",
        "open_file_cache_min_uses 1;",
        "open_file_cache_errors on;",
    ):
        assert line in ofc
    assert [x for x in ofc.splitlines() if "open_file_cache" not in x] == plain.splitlines()
    assert "worker_connections 4096;" in plain
    big = servers.nginx_conf(tmp_path, 8080, tmp_path / "root", connections=10_000)
    assert "worker_connections 12600;" in big and "worker_rlimit_nofile 25200;" in big


def _raw_get(port: int, request: bytes, want: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        got = b""
        while len(got) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.skipif(
    servers.by_id()["floor"].missing() is not None, reason="needs uvloop, httptools"
)
def test_floor_serves_files_byte_exact(tmp_path):
    root = tmp_path / "root"
    (root / "many").mkdir(parents=True)
    small, nested = os.urandom(4096), os.urandom(65536)
    (root / "f4k.bin").write_bytes(small)
    (root / "many" / "0001.bin").write_bytes(nested)
    running = servers.by_id()["floor"].start(root, tmp_path / "run")
    try:
        with urllib.request.urlopen(running.url("f4k.bin"), timeout=5) as resp:
            assert resp.status == 200 and resp.read() == small
            assert resp.headers["Content-Length"] == "4096"
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["ETag"] and resp.headers["Last-Modified"]
        with urllib.request.urlopen(running.url("many/0001.bin"), timeout=5) as resp:
            assert resp.read() == nested
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(running.url("missing.bin"), timeout=5)
        assert err.value.code == 404
        # Two requests pipelined on one keep-alive connection: two whole responses.
        req = b"GET /f4k.bin HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"
        got = _raw_get(running.port, req * 2, 2 * 4096 + 200)
        assert got.count(b"HTTP/1.1 200 OK\r\n") == 2 and got.count(small) == 2
        # A file removed after start: the per-request stat sees it (404).
        (root / "f4k.bin").unlink()
        got = _raw_get(running.port, req, 40)
        assert got.startswith(b"HTTP/1.1 404 Not Found\r\n")
    finally:
        running.stop()
    assert running.proc.poll() is not None


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
            "zc-uvloop,floor,raw-sendfile",
            "--scenarios",
            "small-4k,ranges,large-1,large-4,idle-10k",
            "--large-mib",
            "128",
            "--idle",
            "300",
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
    assert data["meta"]["rounds"] == 1
    by_id = {r["id"]: r for r in data["servers"]}
    zc, raw = by_id["zc-uvloop"]["scenarios"], by_id["raw-sendfile"]["scenarios"]
    floor = by_id["floor"]["scenarios"]
    for sc in (zc, floor):
        cell = sc["small-4k"]
        assert cell["rps"] > 0 and cell["p99_ms"] > 0 and cell["n_rounds"] == 1
        assert cell["process_us_per_req"] > 0 and cell["core_us_per_req"] > 0
        assert cell["user_us_per_req"] + cell["sys_us_per_req"] == pytest.approx(
            cell["process_us_per_req"]
        )
        assert len(cell["rounds"]) == 1 and cell["rounds"][0]["round"] == 1
        idle_cell = sc["idle-10k"]
        assert idle_cell["connections"] == 300 and idle_cell["sockets_added"] == 300
        assert idle_cell["rss_idle_kib"] > 0 and idle_cell["kib_per_conn"] is not None
    assert zc["ranges"]["rps"] > 0 and zc["ranges"]["mb_per_s"] > 0
    assert zc["ranges"]["core_us_per_req"] > 0
    for sc in (zc, raw):
        assert sc["large-1"]["mb_per_s"] > 0 and sc["large-4"]["mb_per_s"] > 0
        assert sc["large-1"]["process_s_per_gib"] > 0
        assert sc["large-4"]["peak_rss_kib"] > 0
        assert 0 <= sc["large-4"]["rss_growth_kib"] <= sc["large-4"]["peak_rss_kib"]
    assert raw["small-4k"] is None and raw["ranges"] is None and raw["idle-10k"] is None
    assert floor["ranges"] is None and floor["large-1"] is None
    assert by_id["zc-uvloop"]["peak_rss_kib"] > 0
    md = (out / "results.md").read_text()
    assert "## small-4k: 4 KiB file" in md
    assert "| server | core µs/req | req/s | p50 ms |" in md  # no nginx here: no ratios
    assert "| zerocopy uvloop+sendfile | " in md
    assert "Not measured here (does not apply): raw os.sendfile." in md
    assert "browser-like heads" in md
    assert md.strip() in proc.stdout
