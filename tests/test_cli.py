"""The command line: defaults, messages and exit codes, signals."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .serverproc import REPO, ServerProcess


def run_cli(*args: str, timeout: float = 20, cwd=REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_missing_root_exits_2_with_a_message(tmp_path):
    result = run_cli("-d", str(tmp_path / "nope"), "-p", "0")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_root_that_is_a_file_exits_2(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    result = run_cli("-d", str(f), "-p", "0")
    assert result.returncode == 2
    assert "is not a directory" in result.stderr


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
def test_invalid_port_exits_2(tmp_path, port):
    result = run_cli("-d", str(tmp_path), "--port", port)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_1_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("-d", str(tmp_path), "-b", "127.0.0.1", "-p", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0]
    assert "Traceback" not in result.stderr


def test_serving_line_and_positional_port(tree):
    srv = ServerProcess(tree.root, logdir=tree.base / "logs")
    srv.start()
    try:
        assert re.search(
            rf"^Serving {re.escape(str(tree.root))} \(1 worker, send path \S+, "
            rf"features: [^)]*\) at http://127\.0\.0\.1:{srv.port}/$",
            srv.stdout(),
            re.M,
        )
    finally:
        srv.stop()


def test_default_directory_is_the_current_one(tree):
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "0", "-b", "127.0.0.1"],
        cwd=tree.root,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"Serving (.+) \(.*\) at http://127\.0\.0\.1:(\d+)/\n", line)
        assert m and m.group(1) == str(tree.root)
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(2)}/hello.txt", timeout=10) as r:
            assert r.read() == tree.files["hello.txt"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_exit_cleanly(tree, sig):
    srv = ServerProcess(tree.root, logdir=tree.base / "logs").start()
    with urllib.request.urlopen(srv.url("/hello.txt"), timeout=10) as r:
        assert r.status == 200
    assert srv.stop(sig) == 0
    assert "Traceback" not in srv.stderr()


def test_access_log_lines_are_combined_log_format(tree):
    with ServerProcess(tree.root, logdir=tree.base / "logs") as srv:
        req = urllib.request.Request(
            srv.url("/hello.txt?q=%22x%22"),
            headers={"User-Agent": 'agent "quoted" \xe9', "Referer": "http://r/"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        out = srv.wait_for_log('"GET /hello.txt', stream="stdout")
    line = next(ln for ln in out.splitlines() if "GET /hello.txt" in ln)
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
        r'"GET /hello\.txt\?q=%22x%22 HTTP/1\.1" 200 13 "http://r/" "agent \\x22quoted\\x22 \\xE9"',
        line,
    ), line


def test_access_log_off(tree):
    with ServerProcess(tree.root, ["--access-log", "off"], logdir=tree.base / "logs") as srv:
        with urllib.request.urlopen(srv.url("/hello.txt"), timeout=10) as r:
            r.read()
        time.sleep(0.3)
        assert "GET /hello.txt" not in srv.stdout()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_loop_choice_is_reported(tree, loop):
    with ServerProcess(tree.root, ["--loop", loop], logdir=tree.base / "logs") as srv:
        srv.wait_for_log(f"loop={loop}")


def test_every_option_parses_into_the_config():
    from server.process.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "9000",
            "-d",
            "/tmp",
            "-b",
            "127.0.0.1",
            "--no-sendfile",
            "--loop",
            "asyncio",
            "--dotfiles",
            "allow",
            "--access-log",
            "off",
            "--log-level",
            "debug",
            "--inline-max",
            "1000",
            "--no-cache",
            "--header-timeout",
            "2",
            "--keepalive-timeout",
            "3",
            "--send-timeout",
            "4",
            "--max-connections",
            "5",
            "--shutdown-timeout",
            "6",
        ]
    )
    config = config_from_args(args)
    assert (config.port, config.root, config.host) == (9000, "/tmp", "127.0.0.1")
    assert not config.sendfile and config.loop == "asyncio" and config.allow_dotfiles
    assert not config.access_log and config.log_level == "debug"
    assert (config.inline_max, config.cache) == (1000, False)
    assert (config.header_timeout, config.keepalive_timeout, config.send_timeout) == (2, 3, 4)
    assert (config.max_connections, config.shutdown_timeout) == (5, 6)
