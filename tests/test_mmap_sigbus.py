"""Why the server never mmaps a file: another process's truncate becomes a SIGBUS.

A mapping of a file the server does not control turns a truncate by someone else into a
fatal signal at the next touch of a page past the new end: the whole process dies, with
every connection it serves. ``read``/``pread``/``sendfile`` on the same descriptor report
a short count (0 at the end) instead, which the server answers by closing one connection.

Shown here with real files and real processes: a child that mmaps a file and dies of
SIGBUS once the parent truncates it; the same syscalls the send paths use returning 0 in
the same situation; and the real server, on each send path, surviving a file truncated
to 0 bytes in the middle of a download.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .rawhttp import connect, exchange, get
from .serverproc import SEND_PATHS, ServerProcess

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SIGBUS on a truncated mapping: Linux only"
)

PAGE = mmap.PAGESIZE
FILE_SIZE = 1024 * 1024 + 3 * PAGE  # 1 MiB and a few pages
PROBE = 1024 * 1024  # the offset read after the truncate: past the new end in every case
CHILD_TIMEOUT = 10.0

# The child: map the whole file, prove it can read it, report "mapped", wait for the
# parent's go-ahead line, then touch PROBE. It prints "survived" only if that did not kill it.
MMAP_CHILD = textwrap.dedent(
    """
    import mmap, sys
    path, probe = sys.argv[1], int(sys.argv[2])
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    first = m[: mmap.PAGESIZE]
    assert len(first) == mmap.PAGESIZE and m[probe] == first[0] ^ 0xFF
    print("mapped", len(m), flush=True)
    sys.stdin.readline()
    value = m[probe]  # past the file's new end: SIGBUS
    print("survived", value, flush=True)
    """
)

# The same child with the send paths' syscalls instead of a mapping.
PREAD_CHILD = textwrap.dedent(
    """
    import os, socket, sys
    path, probe = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDONLY)
    assert len(os.pread(fd, 4096, 0)) == 4096 and len(os.pread(fd, 1, probe)) == 1
    print("opened", os.fstat(fd).st_size, flush=True)
    sys.stdin.readline()
    a, b = socket.socketpair()
    print("survived", len(os.pread(fd, 4096, probe)), os.sendfile(a.fileno(), fd, probe, 4096), flush=True)
    """
)


def _make_file(path: Path) -> Path:
    """FILE_SIZE bytes; byte PROBE is the first byte inverted, so the child can check it."""
    data = bytearray(os.urandom(FILE_SIZE))
    data[PROBE] = data[0] ^ 0xFF
    path.write_bytes(bytes(data))
    return path


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of the child's stdout, or b"" on EOF; fails the test after ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"child wrote no line in {timeout}s"
    return proc.stdout.readline()


def _run_child(script: str, path: Path, new_size: int) -> tuple[bytes, int, bytes, bytes]:
    """Start ``script`` on ``path``, wait for its ready line, truncate the file to
    ``new_size``, let it go on; return (ready line, returncode, rest of stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(PROBE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: readline() takes only the ready line, communicate() the rest
    )
    try:
        ready = _readline(proc, CHILD_TIMEOUT)
        if ready:
            os.truncate(path, new_size)
        out, err = proc.communicate(b"go\n", timeout=CHILD_TIMEOUT)
        return ready, proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("new_size", [0, PAGE], ids=["to-0", "to-one-page"])
def test_truncate_under_a_mapping_kills_the_process_with_sigbus(tmp_path, new_size):
    path = _make_file(tmp_path / "mapped.bin")
    ready, returncode, out, err = _run_child(MMAP_CHILD, path, new_size)
    # It really mapped and read the file (so the death below is not some other failure)...
    assert ready == f"mapped {FILE_SIZE}\n".encode(), err.decode(errors="replace")
    assert os.path.getsize(path) == new_size
    # ...and one read of a byte past the new end killed it: no exception, no handler.
    assert returncode == -signal.SIGBUS, (returncode, out, err)
    assert b"survived" not in out
    print(f"mmap child, file truncated to {new_size}: returncode {returncode}, stderr {err!r}")


@pytest.mark.parametrize("new_size", [0, PAGE], ids=["to-0", "to-one-page"])
def test_truncate_under_an_open_fd_is_a_short_read_in_a_child(tmp_path, new_size):
    """The same child, the same truncate, with pread and sendfile: it lives and exits 0."""
    path = _make_file(tmp_path / "opened.bin")
    ready, returncode, out, err = _run_child(PREAD_CHILD, path, new_size)
    assert ready == f"opened {FILE_SIZE}\n".encode(), err.decode(errors="replace")
    assert (returncode, out) == (0, b"survived 0 0\n"), err.decode(errors="replace")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    return server, client


@pytest.mark.parametrize("pair", ["socketpair", "tcp-loopback"])
def test_truncate_under_an_open_fd_is_a_short_count_in_process(tmp_path, pair):
    """What the send paths see: pread (buffered) and sendfile (both zero-copy paths) on a
    file truncated under the open descriptor report 0 bytes, or the bytes that are left,
    and this very process goes on."""
    path = _make_file(tmp_path / "shrinking.bin")
    sender, receiver = socket.socketpair() if pair == "socketpair" else _tcp_pair()
    fd = os.open(path, os.O_RDONLY)
    try:
        with sender, receiver:
            receiver.settimeout(5)
            assert os.sendfile(sender.fileno(), fd, PROBE, 4096) == 4096  # before: all there
            assert receiver.recv(4096, socket.MSG_WAITALL) == path.read_bytes()[PROBE:][:4096]
            os.truncate(path, PAGE)
            assert os.fstat(fd).st_size == PAGE
            # Past the new end: end of file, not a signal.
            assert os.pread(fd, 4096, PROBE) == b""
            assert os.sendfile(sender.fileno(), fd, PROBE, 4096) == 0
            # Straddling it: a short count, exactly what is left.
            assert len(os.pread(fd, 4096, PAGE - 100)) == 100
            assert os.sendfile(sender.fileno(), fd, PAGE - 100, 4096) == 100
            assert len(receiver.recv(4096)) == 100
            os.truncate(path, 0)
            assert os.pread(fd, 4096, 0) == b""
            assert os.sendfile(sender.fileno(), fd, 0, 4096) == 0
            os.lseek(fd, PROBE, os.SEEK_SET)
            assert os.read(fd, 4096) == b""
    finally:
        os.close(fd)


DOWNLOAD_SIZE = 64 * 1024 * 1024
READ_BEFORE_TRUNCATE = 384 * 1024
END_TIMEOUT = 10.0


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
def test_truncating_a_file_mid_download_does_not_kill_the_server(tmp_path, path_name):
    args, _ = SEND_PATHS[path_name]
    root = tmp_path / "root"
    root.mkdir()
    content = os.urandom(1024 * 1024) * (DOWNLOAD_SIZE // (1024 * 1024))
    (root / "big.bin").write_bytes(content)
    (root / "other.txt").write_bytes(b"another file\n")
    with ServerProcess(root, args, logdir=tmp_path / "logs") as srv:
        with connect(srv.port, timeout=END_TIMEOUT) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(get("/big.bin"))
            got = bytearray()
            while b"\r\n\r\n" not in got or len(got) < READ_BEFORE_TRUNCATE:
                chunk = sock.recv(64 * 1024)
                assert chunk, "connection closed before the truncate"
                got += chunk
                time.sleep(0.005)  # a slow reader: the server is mid-body, not done
            os.truncate(root / "big.bin", 0)
            start = time.monotonic()
            ended = "timeout"
            while time.monotonic() - start < END_TIMEOUT:
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    break
                except ConnectionResetError:
                    ended = "reset"
                    break
                if not chunk:
                    ended = "eof"
                    break
                got += chunk
            took = time.monotonic() - start
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert f"Content-Length: {DOWNLOAD_SIZE}".encode() in head
        # The connection ended early, promptly, and with no hang...
        assert ended in ("eof", "reset"), f"no end of the response {took:.1f}s after the truncate"
        assert READ_BEFORE_TRUNCATE - len(head) <= len(body) < DOWNLOAD_SIZE
        # ...and no padding: every byte that came is the file's own, in place.
        assert body == content[: len(body)]
        # The server lives, and serves another file.
        assert srv.proc is not None and srv.proc.poll() is None
        responses, _ = exchange(srv.port, get("/other.txt"))
        assert responses[0].status == 200 and bytes(responses[0].body) == b"another file\n"
        # The server's own account: the send saw the end of the file and gave up on it.
        srv.wait_for_log("aborted after")
        log_line = next(line for line in srv.stderr().splitlines() if "aborted after" in line)
        assert log_line.endswith("file ended before Content-Length"), log_line
        print(
            f"{path_name}: {ended} after {len(body)} of {DOWNLOAD_SIZE} body bytes "
            f"({took * 1000:.0f} ms after the truncate); server log: {log_line}"
        )
        assert srv.loop_errors() == []
