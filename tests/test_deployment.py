"""Deployment: unix sockets, socket activation, workers, proxies' fields, TLS, replicas."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.http.conditional import make_etag

from .conftest import BIG_SIZE
from .rawhttp import RawResponse, exchange, get, read_responses
from .serverproc import REPO, SEND_PATHS, ServerProcess

# --- unix domain sockets ------------------------------------------------------------------


class UnixServer:
    """The server on a unix socket (ServerProcess expects a TCP port)."""

    def __init__(self, root: Path, path: Path, args: list[str], logdir: Path) -> None:
        self.path = path
        logdir.mkdir(parents=True, exist_ok=True)
        self.out = logdir / f"unix-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        cmd = [
            sys.executable,
            "-m",
            "server",
            "-d",
            str(root),
            "--unix",
            str(path),
            "--log-level",
            "debug",
            *args,
        ]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
        deadline = time.monotonic() + 15
        while f"at unix:{path}" not in self.out.read_text():
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def exchange(self, data: bytes, expect: int = 1) -> list[RawResponse]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(str(self.path))
            sock.sendall(data)
            responses, _ = read_responses(sock, expect)
        return responses

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
def test_unix_socket_serves_on_every_send_path(tree, tmp_path, path_name):
    args, send_path = SEND_PATHS[path_name]
    sock_path = tmp_path / "zc.sock"
    srv = UnixServer(tree.root, sock_path, args, tmp_path)
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660  # the default --unix-mode
        responses = srv.exchange(get("/big.bin") + get("/big.bin", extra="Range: bytes=5-9\r\n"), 2)
        assert bytes(responses[0].body) == tree.files["big.bin"]
        assert bytes(responses[1].body) == tree.files["big.bin"][5:10]
        deadline = time.monotonic() + 5
        while f"via {send_path}" not in srv.err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"GET /big.bin -> 200, {BIG_SIZE} body bytes via {send_path}" in srv.err.read_text()
        # The access log names unix-socket peers "unix".
        assert re.search(r"^unix - - \[", srv.out.read_text(), re.M)
    finally:
        assert srv.stop() == 0
    assert not sock_path.exists()  # removed at exit


def test_unix_socket_mode_and_stale_file(tree, tmp_path):
    sock_path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # a socket file nobody listens on, as a killed server leaves it
    srv = UnixServer(tree.root, sock_path, ["--unix-mode", "600"], tmp_path)
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        assert srv.exchange(get("/hello.txt"))[0].status == 200
        # A second server must not steal a live socket.
        second = subprocess.run(
            [sys.executable, "-m", "server", "-d", str(tree.root), "--unix", str(sock_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 1
        assert "another server is listening" in second.stderr
        assert srv.exchange(get("/hello.txt"))[0].status == 200
    finally:
        srv.stop()


def test_unix_path_that_is_a_regular_file_is_not_deleted(tree, tmp_path):
    victim = tmp_path / "important.txt"
    victim.write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(tree.root), "--unix", str(victim)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert victim.read_text() == "keep me"


# --- systemd socket activation ---------------------------------------------------------------


def test_systemd_socket_activation(tree, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    out = tmp_path / "sd.out"
    # LISTEN_PID must be the server's own pid: the shell's $$ survives its exec.
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            ["sh", "-c", script, "sh", sys.executable, "-m", "server", "-d", str(tree.root)],
            cwd=REPO,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd, 3),  # 3 too: close_fds runs after preexec_fn's dup2
            preexec_fn=lambda: os.dup2(fd, 3),
        )
    listener.close()
    try:
        deadline = time.monotonic() + 15
        while "Serving" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert f"127.0.0.1:{port}" in out.read_text()  # it announced the inherited socket
        responses, _ = exchange(port, get("/hello.txt"))
        assert bytes(responses[0].body) == tree.files["hello.txt"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


# --- worker processes --------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_workers_share_the_port_restart_and_stop_gracefully(tree, tmp_path):
    srv = ServerProcess(tree.root, ["--workers", "2"], logdir=tmp_path).start()
    try:
        assert wait_for(lambda: len(children(srv.proc.pid)) == 2)
        workers = children(srv.proc.pid)
        for _ in range(20):
            responses, _ = exchange(srv.port, get("/hello.txt"))
            assert bytes(responses[0].body) == tree.files["hello.txt"]
        # A crashed worker is replaced, and the port keeps answering meanwhile.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda: len(children(srv.proc.pid)) == 2 and victim not in children(srv.proc.pid)
        )
        srv.wait_for_log("restarting it")
        for _ in range(20):
            responses, _ = exchange(srv.port, get("/big.bin"))
            assert bytes(responses[0].body) == tree.files["big.bin"]
        # SIGHUP reaches the workers.
        os.kill(srv.proc.pid, signal.SIGHUP)
        assert wait_for(lambda: srv.stderr().count("SIGHUP: reopening logs") >= 2)
        current = children(srv.proc.pid)
    finally:
        code = srv.stop()
    assert code == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in current)
    assert "Traceback" not in srv.stderr()


def test_workers_stop_when_the_supervisor_is_killed(tree, tmp_path):
    srv = ServerProcess(tree.root, ["--workers", "2"], logdir=tmp_path).start()
    try:
        assert wait_for(lambda: len(children(srv.proc.pid)) == 2)
        workers = children(srv.proc.pid)
        srv.proc.kill()  # SIGKILL: the supervisor cannot forward anything
        srv.proc.wait(5)
        assert wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 15)
    finally:
        for pid in children(srv.proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_stopped_workers_are_killed_after_the_shutdown_timeout_and_grace(tree, tmp_path):
    """The review's reproduction: --workers 2 --shutdown-timeout 1, both workers SIGSTOPped,
    SIGTERM to the supervisor. It used to block in waitpid(-1, 0) forever (the call is
    retried after each signal), so its kill deadline never fired."""
    from server.process.supervisor import EXIT_KILLED_WORKERS, KILL_GRACE

    srv = ServerProcess(
        tree.root, ["--workers", "2", "--shutdown-timeout", "1"], logdir=tmp_path
    ).start()
    workers: set[int] = set()
    try:
        assert wait_for(lambda: len(children(srv.proc.pid)) == 2)
        workers = children(srv.proc.pid)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(1 + KILL_GRACE + 15)  # generous: the bound is the point
        took = time.monotonic() - started
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert code == EXIT_KILLED_WORKERS != 0
    assert took >= 1 + KILL_GRACE - 0.5, took  # not before the timeout and its grace
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert "did not stop in time: killing it" in srv.stderr()


def test_workers_auto_is_the_cpu_count(tree, tmp_path):
    from server.process.cli import available_cpus

    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
    with ServerProcess(tree.root, ["--workers", "auto"], logdir=tmp_path) as srv:
        assert wait_for(lambda: len(children(srv.proc.pid)) == available_cpus())


def test_signal_to_the_whole_process_group_lets_downloads_finish(tree, tmp_path):
    """systemd's default KillMode and Ctrl-C signal every process: each worker then gets
    SIGTERM twice (directly and from the supervisor); the second must not cut downloads."""
    srv = ServerProcess(
        tree.root,
        ["--workers", "2", "--access-log", "off"],
        logdir=tmp_path,
        prefix=["setsid"],  # its own process group, to signal it whole
    ).start()
    try:
        assert wait_for(lambda: len(children(srv.proc.pid)) == 2)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(get("/sparse.bin", extra="Range: bytes=0-67108863\r\n"))
            data = sock.recv(65536)
            os.killpg(srv.proc.pid, signal.SIGTERM)
            while chunk := sock.recv(1 << 20):
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1]
        assert len(body) == 64 * 1024 * 1024
        assert srv.proc.wait(15) == 0
    finally:
        srv.stop()


# --- behind a proxy: forwarded fields and the root path ----------------------------------------


def logged_client(srv: ServerProcess, marker: str) -> str:
    line = next(ln for ln in srv.wait_for_log(marker, stream="stdout").splitlines() if marker in ln)
    return line.split(" ", 1)[0]


@pytest.mark.parametrize(
    "allow, logged",
    [("127.0.0.1", "203.0.113.7"), ("10.9.9.9", "127.0.0.1"), ("*", "203.0.113.7")],
)
def test_forwarded_for_is_believed_only_from_trusted_peers(tree, tmp_path, allow, logged):
    with ServerProcess(tree.root, ["--forwarded-allow-ips", allow], logdir=tmp_path) as srv:
        marker = f"/hello.txt?m={time.monotonic_ns()}"
        exchange(srv.port, get(marker, extra="X-Forwarded-For: 203.0.113.7\r\n"))
        assert logged_client(srv, marker) == logged


def test_bad_forwarded_allow_ips_is_a_usage_error(tree):
    result = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(tree.root), "--forwarded-allow-ips", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "forwarded-allow-ips" in result.stderr


def test_root_path_redirects_and_accepts_both_forms(tree, tmp_path):
    with ServerProcess(tree.root, ["--root-path", "/files/"], logdir=tmp_path) as srv:
        data = (
            get("/files/hello.txt")
            + get("/hello.txt")  # a proxy that strips the prefix
            + get("/files/dir")
            + get("/files?x=1")
            + get("/files/dir/../noindex")  # not canonical: absolute, with the prefix
        )
        r, _ = exchange(srv.port, data, expect=5)
    assert bytes(r[0].body) == bytes(r[1].body) == tree.files["hello.txt"]
    assert (r[2].status, r[2].header("location")) == (301, "dir/")
    assert (r[3].status, r[3].header("location")) == (301, "files/?x=1")
    assert (r[4].status, r[4].header("location")) == (301, "/files/noindex/")


def test_root_path_with_non_ascii_is_percent_encoded_not_a_traceback(tree, tmp_path):
    # Used to crash at start with a UnicodeEncodeError traceback (handler.py:82).
    with ServerProcess(tree.root, ["--root-path", "/fichiers-\u00e9"], logdir=tmp_path) as srv:
        data = (
            get("/fichiers-%C3%A9/hello.txt")
            + get("/fichiers-%C3%A9")
            + get("http://h/fichiers-%C3%A9/dir")  # absolute-form: the same as origin-form
        )
        r, _ = exchange(srv.port, data, expect=3)
        assert "Traceback" not in srv.stderr()
    assert r[0].status == 200 and bytes(r[0].body) == tree.files["hello.txt"]
    assert (r[1].status, r[1].header("location")) == (301, "fichiers-%C3%A9/")
    assert (r[2].status, r[2].header("location")) == (301, "dir/")


@pytest.mark.parametrize("bad", ["/a b", "/a\tb", "/%zz", "/a/../b", "/a?b"])
def test_bad_root_path_is_a_usage_error(tree, bad):
    result = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(tree.root), "--root-path", bad],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "root path" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    base = tmp_path_factory.mktemp("tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(base / "server.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    return base


def tls_exchange(port: int, cafile: Path, data: bytes, expect: int = 1) -> list[RawResponse]:
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(data)
        responses, _ = read_responses(sock, expect, timeout=30)
    return responses


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_tls_serves_byte_exact_through_the_buffered_path(tree, tls_files, tmp_path, loop):
    args = ["--loop", loop, "--certfile", str(tls_files / "server.pem")]
    with ServerProcess(tree.root, args, logdir=tmp_path) as srv:
        big = tree.files["big.bin"]
        r = tls_exchange(
            srv.port,
            tls_files / "ca.pem",
            get("/big.bin")
            + get("/big.bin", extra="Range: bytes=100-199\r\n")
            + get("/big.bin", extra="Range: bytes=0-9,-10\r\n")
            + get("/hello.txt"),
            expect=4,
        )
        assert hashlib.sha256(bytes(r[0].body)).digest() == hashlib.sha256(big).digest()
        assert (r[1].status, bytes(r[1].body)) == (206, big[100:200])
        assert r[2].status == 206 and r[2].header("content-type").startswith("multipart/byteranges")
        assert bytes(r[3].body) == tree.files["hello.txt"]
        srv.wait_for_log("GET /big.bin -> 200")
        assert srv.send_paths_for("/big.bin")[0] == "buffered"  # never sendfile under TLS
        # Plain HTTP on the TLS port: the handshake fails, quietly.
        with contextlib.suppress(OSError):
            exchange(srv.port, get("/hello.txt"), timeout=3)
        time.sleep(0.3)
        assert srv.loop_errors() == []


def test_tls_large_download(tree, tls_files, tmp_path):
    args = ["--certfile", str(tls_files / "server.pem")]
    start, length = 4 * 1024**3 + 1000, 262156  # the sparse file's marked region
    with ServerProcess(tree.root, args, logdir=tmp_path) as srv:
        r = tls_exchange(
            srv.port,
            tls_files / "ca.pem",
            get("/sparse.bin", extra=f"Range: bytes=0-{64 * 1024 * 1024 - 1}\r\n")
            + get("/sparse.bin", extra=f"Range: bytes={start}-{start + length - 1}\r\n"),
            expect=2,
        )
    assert bytes(r[0].body) == bytes(64 * 1024 * 1024)
    assert bytes(r[1].body)[:12] == b"beyond-4GiB:"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_tls_handshakes_are_bounded_by_header_timeout_and_counted_from_accept(
    tree, tls_files, tmp_path, loop
):
    """The review: with --certfile --header-timeout 2 --max-connections 5, 20 connections
    that never begin a handshake stayed open 60 s (asyncio's handshake timeout) and were
    not counted (connections_active 0)."""
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mport = probe.getsockname()[1]
    args = ["--loop", loop, "--certfile", str(tls_files / "server.pem"), "--header-timeout", "2"]
    args += ["--max-connections", "5", "--metrics", f"127.0.0.1:{mport}"]
    with ServerProcess(tree.root, args, logdir=tmp_path) as srv:
        srv.wait_for_log("metrics at")
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        try:
            time.sleep(0.5)
            text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5)
            body = text.read().decode()
            active = re.search(r"^zerocopy_connections_active\{[^}]*\} (\d+)", body, re.M)
            # Counted from accept, in their handshake (asyncio hands a TLS connection to
            # the protocol only after it, so they used to be invisible, and unlimited).
            assert active and int(active.group(1)) == 20, body
            # Over --max-connections, counting those: a client that completes its
            # handshake now is turned away.
            r = tls_exchange(srv.port, tls_files / "ca.pem", get("/hello.txt"))
            assert r[0].status == 503
            started = time.monotonic()
            for sock in idle:
                sock.settimeout(15)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""  # closed by the server
            took = time.monotonic() - started
        finally:
            for sock in idle:
                sock.close()
        assert took < 2 + 6, took  # the header timeout, not 60 s
        # And a real client is served once the slots are free again (a failed handshake
        # stops counting a moment after its timeout).
        time.sleep(0.5)
        r = tls_exchange(srv.port, tls_files / "ca.pem", get("/hello.txt"))
        assert bytes(r[0].body) == tree.files["hello.txt"]
        assert srv.loop_errors() == []


@pytest.mark.parametrize("length", [None, 64 * 1024 * 1024], ids=["3MiB", "64MiB"])
def test_tls_half_close_is_never_a_silent_short_body(tree, tls_files, tmp_path, length):
    """The review: GET /big.bin over TLS, then shutdown(SHUT_WR): part of the body, then
    EOF, and nothing said. TLS transports cannot stay half-open as TCP ones do; the cut
    is now logged as an abort with the bytes that went out, or the body is complete."""
    args = ["--certfile", str(tls_files / "server.pem"), "--access-log-format", "json"]
    if length is None:
        target, request, big = "/big.bin", get("/big.bin"), tree.files["big.bin"]
    else:
        target, big = "/sparse.bin", bytes(length)
        request = get(target, extra=f"Range: bytes=0-{length - 1}\r\n")
    with ServerProcess(tree.root, args, logdir=tmp_path) as srv:
        context = ssl.create_default_context(cafile=str(tls_files / "ca.pem"))
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=20) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(request)
            # The TCP half-close under the TLS session (an SSLSocket's own shutdown() would
            # drop its TLS state): through a second descriptor for the same socket.
            with socket.socket(fileno=os.dup(sock.fileno())) as half:
                half.shutdown(socket.SHUT_WR)
            data = b""
            with contextlib.suppress(OSError, ssl.SSLError):
                while chunk := sock.recv(1 << 20):
                    data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        log = srv.wait_for_log(f'"target":"{target}"', stream="stdout")
    (record,) = [json.loads(x) for x in log.splitlines() if f'"{target}"' in x]
    if body == big:
        assert record["outcome"] == "complete" and record["bytes"] == len(big)
    else:
        assert record["outcome"] == "client-aborted", record
        assert len(body) <= record["bytes"] < len(big)


def test_missing_certificate_is_a_usage_error(tree, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(tree.root), "--certfile", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "certificate" in result.stderr
    assert "Traceback" not in result.stderr


# --- replicas ---------------------------------------------------------------------------------


def test_replicas_over_copies_agree_and_resume_across(tree, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        shutil.copy2(tree.root / "big.bin", root / "big.bin")  # copy2 keeps the mtime
    assert os.stat(a / "big.bin").st_ino != os.stat(b / "big.bin").st_ino
    with ServerProcess(a, [], logdir=tmp_path) as sa, ServerProcess(b, [], logdir=tmp_path) as sb:
        ra, _ = exchange(sa.port, get("/big.bin", method="HEAD"), head_requests=[True])
        rb, _ = exchange(sb.port, get("/big.bin", method="HEAD"), head_requests=[True])
        assert ra[0].header("etag") == rb[0].header("etag")
        assert ra[0].header("last-modified") == rb[0].header("last-modified")
        st = os.stat(a / "big.bin")
        assert ra[0].header("etag") == make_etag(st.st_size, st.st_mtime_ns)
        # Half the download from replica A, the rest from B with If-Range.
        half = BIG_SIZE // 2
        first, _ = exchange(sa.port, get("/big.bin", extra=f"Range: bytes=0-{half - 1}\r\n"))
        extra = f"Range: bytes={half}-\r\nIf-Range: {ra[0].header('etag')}\r\n"
        second, _ = exchange(sb.port, get("/big.bin", extra=extra))
        assert second[0].status == 206
        assert bytes(first[0].body) + bytes(second[0].body) == tree.files["big.bin"]


# --- access log file and rotation ------------------------------------------------------------


def test_access_log_file_is_reopened_on_sighup(tree, tmp_path):
    logfile = tmp_path / "access.log"
    with ServerProcess(tree.root, ["--access-log-file", str(logfile)], logdir=tmp_path) as srv:
        exchange(srv.port, get("/hello.txt?before"))
        assert wait_for(lambda: logfile.exists() and "before" in logfile.read_text())
        rotated = tmp_path / "access.log.1"
        os.rename(logfile, rotated)  # what logrotate does
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for_log("SIGHUP: reopening logs")
        exchange(srv.port, get("/hello.txt?after"))
        assert wait_for(lambda: logfile.exists() and "after" in logfile.read_text())
    assert "after" not in rotated.read_text()
    assert "before" not in logfile.read_text()
