"""Load tests against the real server: 10,000 idle keep-alive connections, 1,000 slow downloads.

Each test starts its own server (``ServerProcess``) on a module-scoped data directory that
holds a 100 MiB file and a tiny one, and measures the server process from ``/proc/PID``:
its open fds and its resident memory (VmRSS, sampled; VmHWM, the kernel's own peak).

The figures are printed (visible under ``pytest -s``), put in the assertion messages, and
appended, one line per measurement, to ``test-artifacts/load-figures.txt`` at the repo root.

Every loop here is bounded both in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .rawhttp import connect, exchange, get, read_responses
from .serverproc import REPO, SEND_PATHS, ServerProcess

resource = pytest.importorskip("resource")

MIB = 1024 * 1024
BIG_NAME = "big-100mib.bin"
BIG_SIZE = 100 * MIB
TINY_NAME = "tiny.txt"
TINY_BODY = b"tiny file for keep-alive connections\n"

FIGURES = REPO / "test-artifacts" / "load-figures.txt"

# --- test 1 ----------------------------------------------------------------------------
IDLE_CONNS = 10_000
IDLE_BATCH = 500
FD_MARGIN = 200  # the test process needs a few fds beyond its sockets
OPEN_BATCH_TIMEOUT = 60.0  # one batch of IDLE_BATCH connects + exchanges
DOWNLOAD_TIMEOUT = 60.0
IDLE_RECHECK = 10

# --- test 2 ----------------------------------------------------------------------------
SLOW_CONNS = 1_000
SLOW_RCVBUF = 4096
SLOW_CONNECT_TIMEOUT = 30.0
SLOW_CONNECT_PHASE = 90.0
SLOW_HOLD_SECONDS = 6.0
SLOW_TICK = 0.5
SLOW_READ_PER_TICK = 2048  # 4 KiB per connection per second
SENDFILE_RSS_BOUND_MIB = 150
BUFFERED_RSS_BOUND_MIB = 1024
FD_RETURN_MARGIN = 20
FD_RETURN_SECONDS = 10.0

# --- 3 ---------------------------------------------------------------------------------
BURST = 1000  # below the listen backlog the server asks for (DEFAULT_BACKLOG, 1024)
BURST_WAIT = 0.5  # less than the 1 s after which a dropped SYN is sent again


# --- helpers ---------------------------------------------------------------------------


def record(line: str) -> None:
    """Print a figure and append it to the figures file the lead reads after the run."""
    print(line, flush=True)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(FIGURES, "a", encoding="utf-8") as f:
        f.write(f"{stamp} {line}\n")


def mem_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        text = f.read()
    out = {}
    for key in ("VmRSS", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        out[key] = int(m.group(1)) if m else 0
    return out


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds_near(pid: int, target: int, margin: int, timeout: float) -> tuple[bool, int, float]:
    """Wait (bounded) until the process has at most ``target + margin`` fds."""
    start = time.monotonic()
    deadline = start + timeout
    n = fd_count(pid)
    while n > target + margin and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n <= target + margin, n, time.monotonic() - start


def stderr_tail(server: ServerProcess, n: int = 3000) -> str:
    return server.stderr()[-n:]


def check_tiny(server: ServerProcess) -> tuple[int, bytes, float]:
    """One GET of the tiny file on a fresh connection: status, body, seconds."""
    t0 = time.monotonic()
    with connect(server.port, timeout=10.0) as sock:
        sock.sendall(get(f"/{TINY_NAME}"))
        responses, _ = read_responses(sock, 1, timeout=10.0, close_wait=0.0)
    took = time.monotonic() - t0
    if not responses or not responses[0].complete:
        return 0, b"", took
    return responses[0].status, bytes(responses[0].body), took


def request_bytes(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: load\r\n\r\n".encode("ascii")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def download(port: int, target: str, timeout: float) -> tuple[socket.socket, int, int, str, float]:
    """GET ``target`` on a new blocking socket and hash the body as it arrives.

    Returns the still-open (keep-alive) socket, the status, the body length received, the
    body's sha256 and the seconds taken. Bounded by ``timeout`` overall.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=10.0)
    try:
        sock.sendall(request_bytes(target))
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline or len(buf) > 65536:
                raise AssertionError(f"no response head in time: {bytes(buf[:200])!r}")
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"closed before the head: {bytes(buf[:200])!r}")
            buf += data
        end = buf.index(b"\r\n\r\n")
        status, headers = _parse_head(bytes(buf[:end]))
        length = int(headers.get("content-length", "0"))
        digest = hashlib.sha256()
        body = buf[end + 4 :]
        got = len(body)
        digest.update(body)
        chunk = bytearray(4 * MIB)
        view = memoryview(chunk)
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"download of {target} not done in {timeout}s: {got} bytes")
            sock.settimeout(min(left, 10.0))
            n = sock.recv_into(view, min(len(chunk), length - got))
            if not n:
                break
            digest.update(view[:n])
            got += n
        return sock, status, got, digest.hexdigest(), time.monotonic() - t0
    except BaseException:
        sock.close()
        raise


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory with the 100 MiB file (a 1 MiB random block repeated) and a tiny file."""
    root = tmp_path_factory.mktemp("load-data")
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(root / BIG_NAME, "wb") as f:
        for _ in range(BIG_SIZE // MIB):
            f.write(block)
            digest.update(block)
    (root / TINY_NAME).write_bytes(TINY_BODY)
    return root, digest.hexdigest()


@pytest.fixture(scope="module", autouse=True)
def raised_fd_limit() -> Iterator[int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _ephemeral_ports() -> int:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 1 << 16
    return int(hi) - int(lo) + 1


# --- 1: ten thousand idle keep-alive connections ------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = _parse_head(head[:-4])
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _open_keepalive(
    port: int, connect_times: list[float]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one tiny GET answered and is now idle (keep-alive)."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connect_times.append(time.monotonic() - t0)
    try:
        writer.write(request_bytes(f"/{TINY_NAME}"))
        status, headers, body = await _read_response(reader)
        if status != 200 or body != TINY_BODY or "close" in headers.get("connection", ""):
            raise AssertionError(f"bad keep-alive response: {status} {headers} {body[:80]!r}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _ten_thousand(server: ServerProcess, big_sha: str) -> dict[str, float]:
    pid = server.proc.pid
    port = server.port
    figures: dict[str, float] = {}
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    baseline_fds = fd_count(pid)
    figures["baseline_rss_mib"] = mib(mem_kib(pid)["VmRSS"])
    try:
        # Open in batches; stop at the first batch with a failure.
        t0 = time.monotonic()
        errors: list[BaseException] = []
        connect_times: list[float] = []
        for _ in range(IDLE_CONNS // IDLE_BATCH):
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(_open_keepalive(port, connect_times) for _ in range(IDLE_BATCH)),
                    return_exceptions=True,
                ),
                OPEN_BATCH_TIMEOUT,
            )
            for r in results:
                if isinstance(r, BaseException):
                    errors.append(r)
                else:
                    conns.append(r)
            if errors:
                break
        figures["open_seconds"] = round(time.monotonic() - t0, 2)
        figures["max_connect_s"] = round(max(connect_times, default=0.0), 3)
        # A loopback connect takes >= 1 s only when its SYN was dropped and retransmitted
        # (the listener's accept queue was full).
        figures["connects_over_1s"] = sum(t >= 1.0 for t in connect_times)
        assert not errors, (
            f"{len(errors)} of the connections failed after {len(conns)} opened "
            f"in {figures['open_seconds']}s; first: {errors[0]!r}\n"
            f"server stderr tail:\n{stderr_tail(server)}"
        )
        assert len(conns) == IDLE_CONNS

        # Let the server settle, then count what it holds.
        await asyncio.sleep(0.5)
        figures["server_fds_idle"] = fd_count(pid)
        figures["idle_rss_mib"] = mib(mem_kib(pid)["VmRSS"])
        record(
            f"idle-keepalive conns={IDLE_CONNS} open_s={figures['open_seconds']} "
            f"conns_per_s={round(IDLE_CONNS / figures['open_seconds'])} "
            f"batch={IDLE_BATCH} max_connect_s={figures['max_connect_s']} "
            f"connects_over_1s={figures['connects_over_1s']} "
            f"server_fds={figures['server_fds_idle']} baseline_fds={baseline_fds} "
            f"baseline_rss_mib={figures['baseline_rss_mib']} "
            f"idle_rss_mib={figures['idle_rss_mib']}"
        )
        assert figures["server_fds_idle"] >= IDLE_CONNS, (
            f"server holds only {figures['server_fds_idle']} fds with {IDLE_CONNS} "
            f"idle connections open; figures {figures}\n{stderr_tail(server)}"
        )

        # The 100 MiB download on connection number IDLE_CONNS + 1, all the others held.
        sock, status, got, sha, took = await asyncio.to_thread(
            download, port, f"/{BIG_NAME}", DOWNLOAD_TIMEOUT
        )
        with sock:
            figures["download_seconds"] = round(took, 2)
            figures["download_mib_per_s"] = round(got / MIB / took, 1)
            figures["after_download_rss_mib"] = mib(mem_kib(pid)["VmRSS"])
            record(
                f"idle-keepalive download size_mib={got / MIB:.1f} seconds={took:.2f} "
                f"mib_per_s={figures['download_mib_per_s']} while_idle_conns={len(conns)} "
                f"rss_mib={figures['after_download_rss_mib']}"
            )
            assert status == 200, f"download status {status}; figures {figures}"
            assert got == BIG_SIZE, f"download got {got} of {BIG_SIZE} bytes; figures {figures}"
            assert sha == big_sha, f"download sha256 differs; figures {figures}"
            assert took < DOWNLOAD_TIMEOUT, f"download too slow; figures {figures}"

            # With the limit at IDLE_CONNS + 1 and that many connections open, the next
            # one is turned away: 503 with Retry-After, then closed.
            responses, closed = await asyncio.to_thread(
                exchange, port, get(f"/{TINY_NAME}"), 1, None, 10.0
            )
            over = responses[0] if responses else None
            assert over is not None and over.status == 503, (
                f"connection {IDLE_CONNS + 2} at --max-connections {IDLE_CONNS + 1}: "
                f"{over and over.status}; figures {figures}"
            )
            assert over.header("retry-after") and closed, (over.headers, closed)

        # A few of the idle connections still work.
        step = IDLE_CONNS // IDLE_RECHECK
        for reader, writer in conns[::step][:IDLE_RECHECK]:
            writer.write(request_bytes(f"/{TINY_NAME}"))
            status, _, body = await asyncio.wait_for(_read_response(reader), 10.0)
            assert status == 200 and body == TINY_BODY, (status, body[:80], figures)
        figures["hwm_mib"] = mib(mem_kib(pid)["VmHWM"])
    finally:
        for _, writer in conns:
            writer.close()
        if conns:
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True),
                30.0,
            )

    ok, n, waited = await asyncio.to_thread(wait_fds_near, pid, baseline_fds, 20, 15.0)
    figures["fds_after_close"] = n
    record(
        f"idle-keepalive closed fds_after={n} baseline_fds={baseline_fds} "
        f"waited_s={waited:.1f} hwm_mib={figures['hwm_mib']}"
    )
    assert ok, f"server still holds {n} fds 15s after the close (baseline {baseline_fds})"
    return figures


def test_ten_thousand_idle_keepalive_connections_and_a_download(
    data_dir: tuple[Path, str], raised_fd_limit: int, tmp_path: Path
) -> None:
    need = IDLE_CONNS + FD_MARGIN
    if raised_fd_limit < need:
        pytest.skip(f"hard RLIMIT_NOFILE is {raised_fd_limit}, below the {need} this test needs")
    if _ephemeral_ports() < need:
        pytest.skip(f"only {_ephemeral_ports()} ephemeral ports, below the {need} needed")
    root, big_sha = data_dir
    # uvloop + sendfile (the default path). Idle connections must outlive the test, and the
    # limit is one above the idle ones: the download is connection 10,001, and 10,002 must
    # get 503 (the default --max-connections is 10,000, which would refuse the download).
    args = [
        "--keepalive-timeout",
        "120",
        "--access-log",
        "off",
        "--max-connections",
        str(IDLE_CONNS + 1),
    ]
    server = ServerProcess(root, args, logdir=tmp_path / "logs").start()
    try:
        t0 = time.monotonic()
        figures = asyncio.run(_ten_thousand(server, big_sha))
        total = time.monotonic() - t0
        record(f"idle-keepalive total_s={total:.1f} figures={figures}")
        assert server.proc.poll() is None, f"server died: {stderr_tail(server)}"
        assert "Traceback" not in server.stderr(), stderr_tail(server)
        status, body, _ = check_tiny(server)
        assert (status, body) == (200, TINY_BODY)
    finally:
        server.stop()


# --- 2: a thousand slow downloads ---------------------------------------------------------


def _slow_connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Before connect: the window scale is negotiated in the handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        # Generous: a connect whose SYN the listener dropped waits 1, 3, 7, 15 s.
        sock.settimeout(SLOW_CONNECT_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request_bytes(f"/{BIG_NAME}"))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@pytest.mark.parametrize("path", list(SEND_PATHS))
def test_thousand_slow_downloads_keep_rss_bounded(
    path: str, data_dir: tuple[Path, str], raised_fd_limit: int, tmp_path: Path
) -> None:
    need = SLOW_CONNS + FD_MARGIN
    if raised_fd_limit < need:
        pytest.skip(f"hard RLIMIT_NOFILE is {raised_fd_limit}, below the {need} this test needs")
    root, _ = data_dir
    cli_args, send_path = SEND_PATHS[path]
    bound_mib = BUFFERED_RSS_BOUND_MIB if send_path == "buffered" else SENDFILE_RSS_BOUND_MIB
    server = ServerProcess(
        root, [*cli_args, "--access-log", "off", "--send-timeout", "120"], logdir=tmp_path / "logs"
    ).start()
    socks: list[socket.socket] = []
    try:
        pid = server.proc.pid
        server.wait_for_log(f"send path={send_path} ")
        baseline_fds = fd_count(pid)
        baseline_rss = mib(mem_kib(pid)["VmRSS"])

        t0 = time.monotonic()
        for _ in range(SLOW_CONNS):
            socks.append(_slow_connect(server.port))
            assert time.monotonic() - t0 < SLOW_CONNECT_PHASE, (
                f"{len(socks)} connections took over {SLOW_CONNECT_PHASE}s to open"
            )
        connect_s = time.monotonic() - t0

        heads = [b""] * SLOW_CONNS  # the first bytes of each response
        received = [0] * SLOW_CONNS
        closed_early = 0
        samples: list[float] = []
        fds_during = 0
        probe: tuple[int, bytes, float] | None = None
        hold_start = time.monotonic()
        ticks = int(SLOW_HOLD_SECONDS / SLOW_TICK)
        for tick in range(ticks):
            samples.append(mib(mem_kib(pid)["VmRSS"]))
            for i, sock in enumerate(socks):
                if sock.fileno() < 0:
                    continue
                try:
                    data = sock.recv(SLOW_READ_PER_TICK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed_early += 1
                    sock.close()
                    continue
                if len(heads[i]) < 64:
                    heads[i] += data[: 64 - len(heads[i])]
                received[i] += len(data)
            if tick == ticks // 2:
                fds_during = fd_count(pid)
                probe = check_tiny(server)  # a small file while 1,000 bodies are in flight
            # Sleep the rest of the tick (bounded: at most SLOW_TICK).
            time.sleep(max(0.0, hold_start + (tick + 1) * SLOW_TICK - time.monotonic()))
        samples.append(mib(mem_kib(pid)["VmRSS"]))
        hold_s = time.monotonic() - hold_start
        peak = max(samples)
        hwm = mib(mem_kib(pid)["VmHWM"])
        ok_heads = sum(h.startswith(b"HTTP/1.1 200 ") for h in heads)
        total_rx = sum(received)
        figures = {
            "path": path,
            "send_path": send_path,
            "conns": SLOW_CONNS,
            "connect_s": round(connect_s, 2),
            "hold_s": round(hold_s, 1),
            "baseline_rss_mib": baseline_rss,
            "peak_rss_mib": peak,
            "hwm_mib": hwm,
            "bound_mib": bound_mib,
            "fds_during": fds_during,
            "baseline_fds": baseline_fds,
            "heads_200": ok_heads,
            "closed_early": closed_early,
            "client_rx_mib": round(total_rx / MIB, 1),
            "probe_status": probe and probe[0],
            "probe_s": probe and round(probe[2], 3),
        }
        record(
            "slow-downloads "
            + " ".join(f"{k}={v}" for k, v in figures.items())
            + f" rss_samples_mib={samples}"
        )
        assert server.proc.poll() is None, f"server died; {figures}\n{stderr_tail(server)}"
        assert closed_early == 0, (
            f"server closed slow connections; {figures}\n{stderr_tail(server)}"
        )
        assert ok_heads == SLOW_CONNS, f"not every download got a 200 head; {figures}"
        assert probe is not None and probe[:2] == (200, TINY_BODY), (
            f"small file during the slow downloads; {figures}"
        )
        assert peak < bound_mib, (
            f"server peak RSS {peak} MiB >= {bound_mib} MiB with {SLOW_CONNS} slow downloads "
            f"on {path}; {figures}"
        )
    finally:
        for sock in socks:
            sock.close()

    try:
        ok, n, waited = wait_fds_near(pid, baseline_fds, FD_RETURN_MARGIN, FD_RETURN_SECONDS)
        status, body, took = check_tiny(server)
        record(
            f"slow-downloads-closed path={path} fds_after={n} baseline_fds={baseline_fds} "
            f"waited_s={waited:.1f} small_get_status={status} small_get_s={took:.3f}"
        )
        assert (status, body) == (200, TINY_BODY), (
            f"after closing the slow downloads on {path}: {status} {body[:80]!r}\n"
            f"{stderr_tail(server)}"
        )
        assert ok, (
            f"server on {path} still holds {n} fds {FD_RETURN_SECONDS}s after the clients "
            f"closed (baseline {baseline_fds})\n{stderr_tail(server)}"
        )
        assert "Traceback" not in server.stderr(), stderr_tail(server)
    finally:
        server.stop()


# --- 3: a burst of connects while the server is not accepting -----------------------------


@pytest.mark.parametrize("path", ["uvloop-sendfile", "asyncio-sendfile"])
def test_listen_backlog_absorbs_a_burst_of_connects(
    path: str, data_dir: tuple[Path, str], raised_fd_limit: int, tmp_path: Path
) -> None:
    """With the server stopped (SIGSTOP), the kernel completes handshakes only while the
    accept queue has room (backlog + 1 entries); a SYN beyond that is dropped. So the count
    of connects done within BURST_WAIT is the queue's size, whatever the machine's speed."""
    if raised_fd_limit < BURST + FD_MARGIN:
        pytest.skip(f"hard RLIMIT_NOFILE is {raised_fd_limit}, below {BURST + FD_MARGIN}")
    root, _ = data_dir
    cli_args, _ = SEND_PATHS[path]
    server = ServerProcess(root, cli_args, logdir=tmp_path / "logs").start()
    socks: list[socket.socket] = []
    try:
        pid = server.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(BURST):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.port))
            time.sleep(BURST_WAIT)
            poller = select.poll()
            for sock in socks:
                poller.register(sock, select.POLLOUT)
            writable = {fd for fd, ev in poller.poll(0) if ev & select.POLLOUT}
            connected = sum(
                sock.fileno() in writable
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                for sock in socks
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        record(
            f"connect-burst path={path} burst={BURST} connected_within_s={BURST_WAIT} "
            f"n={connected} implied_accept_queue={connected}"
        )
        for sock in socks:
            sock.close()
        socks.clear()
        status, body, _ = check_tiny(server)
        assert (status, body) == (200, TINY_BODY), (status, body[:80])
        assert connected == BURST, (
            f"only {connected} of {BURST} connects completed while the server was paused: "
            f"its accept queue holds {connected} (listen backlog {connected - 1}), the rest "
            f"wait >= 1 s for a SYN retransmission"
        )
    finally:
        for sock in socks:
            sock.close()
        server.stop()
