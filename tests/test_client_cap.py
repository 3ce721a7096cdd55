"""--max-connections-per-ip for direct clients: the cap, the 429, and the slot freed.

Loopback has many addresses: clients bind 127.0.0.2 and 127.0.0.3 as their source, so
the server (which trusts 127.0.0.1 as a proxy by default) sees them as two clients.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from .rawhttp import read_responses
from .serverproc import ServerProcess


def connect_from(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def ask(sock: socket.socket) -> int:
    sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    responses, _ = read_responses(sock, close_wait=0.0)
    return responses[0].status


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.txt").write_bytes(b"a\n")
    return tmp_path / "root"


def test_a_client_over_the_cap_gets_429_and_others_do_not(root: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mport = probe.getsockname()[1]
    args = ["--max-connections-per-ip", "2", "--metrics", f"127.0.0.1:{mport}"]
    with ServerProcess(root, args, logdir=tmp_path) as srv:
        srv.wait_for_log("metrics at")
        first, second = connect_from(srv.port, "127.0.0.2"), connect_from(srv.port, "127.0.0.2")
        assert ask(first) == ask(second) == 200  # keep-alive: both stay open
        third = connect_from(srv.port, "127.0.0.2")
        head = third.recv(4096)
        assert head.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 1\r\n" in head
        assert b"Connection: close" in head
        third.settimeout(5)
        while third.recv(4096):
            pass  # then the server closes it
        third.close()
        other = connect_from(srv.port, "127.0.0.3")
        assert ask(other) == 200  # another client
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the slot is freed once the server sees the close
            again = connect_from(srv.port, "127.0.0.2")
            try:
                if ask(again) == 200:
                    break
            finally:
                again.close()
            assert time.monotonic() < deadline, "the slot was never freed"
            time.sleep(0.05)
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read()
        assert b"zerocopy_client_limit_refused_total" in text
        refused = [
            line
            for line in text.decode().splitlines()
            if line.startswith("zerocopy_client_limit_refused_total{")
        ]
        assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 1
        for sock in (second, other):
            sock.close()
    assert '" 429 ' in srv.stdout()  # the refusal is in the access log too


def test_unix_socket_peers_are_exempt(root: Path, tmp_path: Path) -> None:
    """A unix-socket peer is a local proxy, not a client: never capped (unless forwarded
    fields name a client, which the proxy tests cover)."""
    from .test_nginx_proxy import UnixServerProcess  # the unix-socket server runner

    sock_path = tmp_path / "s.sock"
    with UnixServerProcess(root, sock_path, ["--max-connections-per-ip", "1"], tmp_path):
        conns = []
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(sock_path))
            assert ask(s) == 200
            conns.append(s)
        for s in conns:
            s.close()
