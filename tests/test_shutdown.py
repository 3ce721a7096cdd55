"""Graceful shutdown on SIGTERM/SIGINT: in-flight downloads finish, idle connections go."""

from __future__ import annotations

import hashlib
import signal
import socket
import time

import pytest

from .rawhttp import connect, get, read_responses
from .serverproc import SEND_PATHS, ServerProcess

SIZE = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def bigfile(tree):
    path = tree.root / "shutdown-48m.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    path.write_bytes(block * (SIZE // len(block)))
    return path


def slow_download(sock: socket.socket, rate_sleep: float, first: int) -> bytes:
    """Read a whole response, slowly for the first ``first`` bytes."""
    data = bytearray()
    sock.settimeout(20)
    while True:
        chunk = sock.recv(256 * 1024)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) < first:
            time.sleep(rate_sleep)


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_download_in_progress_completes_byte_exact(tree, bigfile, path_name, sig):
    args, _ = SEND_PATHS[path_name]
    srv = ServerProcess(tree.root, [*args, "--access-log", "off"], logdir=tree.base / "logs")
    srv.start()
    try:
        with connect(srv.port) as busy, connect(srv.port) as idle:
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            idle.sendall(get("/hello.txt"))
            responses, _ = read_responses(idle, close_wait=0.0)
            assert responses[0].status == 200
            busy.sendall(get(f"/{bigfile.name}"))
            head = busy.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 OK")
            srv.proc.send_signal(sig)
            # The idle keep-alive connection is closed at once.
            idle.settimeout(3)
            assert idle.recv(100) == b""
            # New connections are refused once the listener is closed.
            time.sleep(0.2)
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
            rest = slow_download(busy, 0.01, 4 * 1024 * 1024)
        body = (head + rest).split(b"\r\n\r\n", 1)[1]
        assert len(body) == SIZE
        assert hashlib.sha256(body).digest() == hashlib.sha256(bigfile.read_bytes()).digest()
        srv.proc.wait(15)
        assert srv.proc.returncode == 0
        assert "Traceback" not in srv.stderr()
    finally:
        srv.stop()


def test_shutdown_timeout_cuts_what_does_not_finish(tree, bigfile):
    args = ["--shutdown-timeout", "1", "--access-log", "off"]
    with ServerProcess(tree.root, args, logdir=tree.base / "logs") as srv:
        with connect(srv.port) as stuck:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.sendall(get(f"/{bigfile.name}"))
            stuck.recv(1000)
            start = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.wait(10)
            elapsed = time.monotonic() - start
        assert srv.proc.returncode == 0
        assert 0.8 < elapsed < 5
