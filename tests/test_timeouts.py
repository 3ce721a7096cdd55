"""Timeouts and the connection limit: slowloris, idle keep-alive, stalled readers, floods."""

from __future__ import annotations

import socket
import time

import pytest

from .rawhttp import connect, exchange, get, read_all, read_responses
from .serverproc import SEND_PATHS, ServerProcess

FAST = ["--header-timeout", "1", "--keepalive-timeout", "1", "--send-timeout", "1"]


@pytest.fixture(scope="module", params=list(SEND_PATHS))
def quick(request, tree):
    """The server with one-second timeouts, on each send path."""
    args, _ = SEND_PATHS[request.param]
    with ServerProcess(tree.root, [*args, *FAST], logdir=tree.base / "logs") as srv:
        yield srv
    assert srv.loop_errors() == [], srv.stderr()[-3000:]


def closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (reading everything), and the bytes."""
    start = time.monotonic()
    data = read_all(sock, timeout=limit)
    return time.monotonic() - start, data


def test_slowloris_head_is_cut_at_header_timeout_not_reset_per_byte(quick):
    with connect(quick.port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\n")
        got = b""
        # One header byte every 0.2 s: each byte would reset a per-byte timer.
        for _ in range(25):
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            got += chunk
            if not chunk or b"408" in got:
                break
        elapsed = time.monotonic() - start
        got += read_all(sock, timeout=2)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 0.8 < elapsed < 3.0


def test_silent_connection_is_closed_at_header_timeout(quick):
    with connect(quick.port) as sock:
        elapsed, data = closed_after(sock, 5)
    assert data.startswith(b"HTTP/1.1 408") or data == b""
    assert 0.8 < elapsed < 3.0


def test_idle_keepalive_connection_is_closed(quick, tree):
    with connect(quick.port) as sock:
        sock.sendall(get("/hello.txt"))
        responses, closed = read_responses(sock, close_wait=0.1)
        assert bytes(responses[0].body) == tree.files["hello.txt"] and not closed
        elapsed, data = closed_after(sock, 5)
    assert data == b""  # closed without a word: nothing was asked
    assert 0.5 < elapsed < 3.0


def test_keepalive_connection_stays_usable_within_the_timeout(quick, tree):
    with connect(quick.port) as sock:
        for _ in range(4):
            sock.sendall(get("/hello.txt"))
            responses, closed = read_responses(sock, close_wait=0.0)
            assert bytes(responses[0].body) == tree.files["hello.txt"] and not closed
            time.sleep(0.5)


def test_reader_that_stops_is_aborted_at_send_timeout(quick):
    with connect(quick.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(get("/sparse.bin", extra="Range: bytes=0-999999999\r\n"))
        time.sleep(0.2)
        sock.recv(1000)
        start = time.monotonic()
        quick.wait_for_log("no progress sending", timeout=6)
        assert time.monotonic() - start < 5  # between one and two timeouts, plus slack
    # The server is fine afterwards.
    responses, _ = exchange(quick.port, get("/hello.txt"))
    assert responses[0].status == 200


def test_slow_but_steady_reader_is_not_aborted(quick, tree):
    """Progress is judged by what the client drains, not by sendfile calls: a reader far
    slower than the socket buffer must survive several send timeouts."""
    size = 8 * 1024 * 1024
    with connect(quick.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(get("/sparse.bin", extra=f"Range: bytes=0-{size - 1}\r\n"))
        received = 0
        deadline = time.monotonic() + 4  # four send timeouts
        sock.settimeout(2)
        while time.monotonic() < deadline:
            chunk = sock.recv(8192)
            assert chunk, "server closed a connection that was making progress"
            received += len(chunk)
            time.sleep(0.05)  # ~160 KiB/s: the socket buffers never empty
        assert 0 < received < size


def test_connections_beyond_the_limit_get_503(tree):
    args = ["--max-connections", "3", "--keepalive-timeout", "30"]
    with ServerProcess(tree.root, args, logdir=tree.base / "logs") as srv:
        held = [connect(srv.port) for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(get("/hello.txt"))
                responses, _ = read_responses(sock, close_wait=0.0)
                assert responses[0].status == 200
            with connect(srv.port) as extra:
                extra.sendall(get("/hello.txt"))
                responses, closed = read_responses(extra)
            assert responses[0].status == 503
            assert responses[0].header("retry-after") == "1"
            assert closed
        finally:
            held.pop().close()
        # A slot is free again.
        deadline = time.monotonic() + 5
        while True:
            responses, _ = exchange(srv.port, get("/hello.txt"))
            if responses[0].status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert responses[0].status == 200
        for sock in held:
            sock.close()
