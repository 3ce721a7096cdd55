"""Every response gets exactly one record, whatever becomes of it, on every send path.

The record (``server/observe/record.py``) feeds the access log and the metrics. nginx logs
every request; so do we: a download the client cuts off is logged with its status and
the body bytes it got so far (before, the cancellation path logged nothing, and on the
stdlib loop's ``loop.sendfile`` path the byte count was "-"). The JSON log names how the
response ended: ``complete``, ``client-aborted``, ``timed-out`` or ``server-error``.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from pathlib import Path

import pytest

from .rawhttp import exchange, get
from .serverproc import SEND_PATHS, ServerProcess

SIZE = 24 * 1024 * 1024  # well above what socket buffers hold: a cut really cuts
COMBINED = re.compile(r'^(\S+) - - \[[^\]]+\] "GET /big\.bin HTTP/1\.1" (\d{3}) (\d+|-) ', re.M)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("record")
    (base / "big.bin").write_bytes(bytes(range(256)) * (SIZE // 256))
    (base / "small.txt").write_bytes(b"small\n")
    return base


def _cut_download(port: int, keep: int = 256 * 1024) -> int:
    """Start GET /big.bin, read about ``keep`` bytes, then reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < keep:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        # SO_LINGER 0: close sends an RST, as a killed client's kernel does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return got


def _wait(srv: ServerProcess, pattern: re.Pattern[str], timeout: float = 10) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pattern.search(srv.stdout())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"no {pattern.pattern!r} in the access log:\n{srv.stdout()[-2000:]}")


@pytest.mark.parametrize("path", list(SEND_PATHS))
def test_a_cut_download_is_logged_with_the_bytes_it_got(
    root: Path, tmp_path: Path, path: str
) -> None:
    args, _ = SEND_PATHS[path]
    with ServerProcess(root, args, logdir=tmp_path) as srv:
        received = _cut_download(srv.port)
        m = _wait(srv, COMBINED)
        status, sent = m.group(2), m.group(3)
        assert status == "200"
        assert sent != "-", "the bytes of a cut download must be counted on every path"
        # At least what the client read went out; not the whole file (the cut was early).
        assert received - 1024 <= int(sent) < SIZE, (received, sent)
        assert len(COMBINED.findall(srv.stdout())) == 1, "one record per response"
        assert srv.loop_errors() == []


@pytest.mark.parametrize("path", list(SEND_PATHS))
def test_json_log_names_how_each_response_ended(root: Path, tmp_path: Path, path: str) -> None:
    args, _ = SEND_PATHS[path]
    options = [*args, "--access-log-format", "json", "--send-timeout", "1"]
    with ServerProcess(root, options, logdir=tmp_path) as srv:
        exchange(srv.port, get("/small.txt"))
        _cut_download(srv.port)
        # A client that stops reading: the send makes no progress and times out.
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            _wait(srv, re.compile(r'"outcome":"timed-out"'), timeout=15)
        finally:
            stalled.close()
        records = [json.loads(x) for x in srv.stdout().splitlines() if x.startswith("{")]
    by_outcome: dict[str, list[dict]] = {}
    for record in records:
        by_outcome.setdefault(record["outcome"], []).append(record)
    (small,) = [r for r in by_outcome["complete"] if r["target"] == "/small.txt"]
    assert small["status"] == 200 and small["bytes"] == len(b"small\n")
    (cut,) = by_outcome["client-aborted"]
    assert cut["target"] == "/big.bin" and cut["status"] == 200 and 0 < cut["bytes"] < SIZE
    (timed_out,) = by_outcome["timed-out"]
    assert timed_out["target"] == "/big.bin" and timed_out["bytes"] < SIZE
    assert set(by_outcome) <= {"complete", "client-aborted", "timed-out", "server-error"}
    assert len(records) == 3, records
