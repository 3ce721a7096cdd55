"""Faults during a response: sendfile unavailable, the file shrinking, the client leaving."""

from __future__ import annotations

import os
import socket
import time

import pytest

from .rawhttp import connect, exchange, get, read_responses
from .serverproc import SEND_PATHS, ServerProcess


@pytest.mark.parametrize("path_name", ["uvloop-sendfile", "asyncio-sendfile"])
def test_sendfile_failing_with_einval_falls_back_to_buffered(tree, path_name):
    args, _ = SEND_PATHS[path_name]
    srv = ServerProcess(
        tree.root, args, logdir=tree.base / "logs", module="tests.faults.sendfile_einval"
    )
    with srv:
        data = get("/big.bin") + get("/big.bin", extra="Range: bytes=5-9,100000-299999\r\n")
        responses, closed = exchange(srv.port, data, expect=2)
        assert bytes(responses[0].body) == tree.files["big.bin"]
        assert (
            responses[1].status == 206
            and b"Content-Range: bytes 100000-299999/" in responses[1].body
        )
        assert not closed
        srv.wait_for_log("GET /big.bin -> 206")
        assert srv.send_paths_for("/big.bin") == ["buffered-fallback"] * 2


def test_file_shrinking_mid_send_closes_the_connection(server, tree):
    size = 64 * 1024 * 1024
    path = tree.root / f"shrinking-{server.port}.bin"
    path.write_bytes(os.urandom(1024 * 1024) * 64)
    try:
        with connect(server.port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(get(f"/{path.name}") + get("/hello.txt"))
            got = sock.recv(256 * 1024)
            assert got.startswith(b"HTTP/1.1 200 OK")
            os.truncate(path, 2 * 1024 * 1024)
            sock.settimeout(10)
            received = len(got)
            start = time.monotonic()
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
            assert time.monotonic() - start < 10
        # Short body, then close: the second pipelined request is never answered inside
        # the first one's framing.
        assert received < size
    finally:
        path.unlink()
    responses, _ = exchange(server.port, get("/hello.txt"))
    assert bytes(responses[0].body) == tree.files["hello.txt"]


def test_client_disconnecting_mid_body_is_logged_and_freed(server, tree):
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.sendall(get("/sparse.bin", extra="Range: bytes=0-999999999\r\n"))
        sock.recv(1024)
    server.wait_for_log("aborted after", timeout=10)
    with connect(server.port) as sock:
        sock.sendall(get("/hello.txt"))
        responses, _ = read_responses(sock)
    assert bytes(responses[0].body) == tree.files["hello.txt"]
