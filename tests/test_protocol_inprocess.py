"""The real ``HttpProtocol`` on a fake transport, in-process (uvicorn style).

No sockets: bytes go in through ``data_received`` and come out of ``FakeTransport.write``;
the event loop is the test's own, so answers, tasks and deadlines run as they do in the
server, in milliseconds. Deadlines are made short in the ``Config`` rather than faked.

The transport has no socket (``get_extra_info("socket")`` is None), so bodies are small
(inline or from the file cache), or sent by the buffered path (``sendfile=False``), which
only uses ``transport.write``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import server.connection.protocol as protocol_module
from server.config import Config
from server.connection.deadlines import Watch
from server.connection.phases import IllegalPhaseMove, Phase
from server.connection.protocol import HttpProtocol
from server.connection.reader import MAX_HEAD_BYTES, MAX_HEADER_FIELDS, MAX_TARGET_BYTES
from server.connection.responses import MAX_QUEUED
from server.connection.shared import Shared
from server.http.request import Request
from server.observe.record import Observer
from server.process.app import build_shared
from server.send.buffered import BUFFERED_CHUNK

SMALL_FILES = {
    "a.txt": b"alpha " * 700,  # ~4 KiB each, distinct
    "b.txt": b"bravo-" * 690,
    "c.txt": b"charlie\n" * 500,
}
BIG_SIZE = 3 * 128 * 1024  # more than one buffered chunk, so a paused send stops midway
BIG = bytes(range(256)) * (BIG_SIZE // 256)

# --- the fake transport -----------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """Records what the protocol does to its transport; loses the connection like real
    transports do: ``connection_lost`` from the loop, once, after ``close``/``abort``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.BaseProtocol | None = None
        self.out = bytearray()
        self.reading = True
        self.pauses = 0
        self.resumes = 0
        self.eof_written = False
        self.closed = False
        self.aborted = False
        self.late_writes = 0  # writes after close/abort (a real transport drops them)
        self.buffer_size = 0
        self.drain_per_look = 0  # a client that reads: the buffer shrinks at every look
        self.looks = 0
        self.limits: list[tuple[int | None, int | None]] = []
        self.high_water = 0  # > 0: over this many bytes written, pause the protocol's writing
        self._lost = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": None, "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            self.late_writes += 1
        self.out += data
        if self.high_water and len(self.out) > self.high_water:
            # As real transports do: pause_writing from inside write, over the high mark.
            self.high_water = 0
            assert isinstance(self.protocol, asyncio.Protocol)
            self.protocol.pause_writing()

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self._lost:
            self._lost = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True
        self.resumes += 1

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        self.looks += 1
        size = self.buffer_size
        if self.drain_per_look:
            self.buffer_size = max(1, size - self.drain_per_look)
        return size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits.append((high, low))


# --- responses out of the transport -----------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_responses(data: bytes) -> list[Response]:
    """The complete responses in ``data``, framed by Content-Length; no trailing bytes."""
    responses = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"incomplete head at {pos}: {data[pos : pos + 80]!r}"
        status_line, *lines = data[pos:end].decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated {name}"
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        body = bytes(data[end + 4 : end + 4 + length])
        assert len(body) == length, f"body cut short: {len(body)} of {length}"
        responses.append(Response(int(status), headers, body))
        pos = end + 4 + length
    return responses


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    host = "Host: t\r\n" if version == "1.1" else ""
    return f"GET {path} HTTP/{version}\r\n{host}{extra}\r\n".encode("latin-1")


# --- the connection under test ----------------------------------------------------------


@dataclass
class Record:
    peer: str
    method: str
    target: bytes
    status: int
    sent: int
    via: str
    outcome: str


@dataclass
class Conn:
    protocol: HttpProtocol
    transport: FakeTransport
    shared: Shared

    def feed(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.transport.out))

    def _state(self) -> tuple[object, ...]:
        t = self.transport
        return (len(t.out), t.eof_written, t.closed, t.aborted, t.reading, self.protocol.phase)

    async def settle(self, quiet_turns: int = 5, max_turns: int = 1000) -> None:
        """Run the loop until the connection stops changing for a few turns (bounded)."""
        last, quiet = self._state(), 0
        for _ in range(max_turns):
            await asyncio.sleep(0)
            state = self._state()
            quiet = quiet + 1 if state == last else 0
            last = state
            if quiet >= quiet_turns and self.protocol.responder.task is None:
                return

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 1.0) -> float:
        """Poll ``condition`` until it holds; how long that took (fails after ``timeout``)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not condition():
            assert loop.time() - start < timeout, "condition not met in time"
            await asyncio.sleep(0.002)
        return loop.time() - start


OpenConn = Callable[..., Conn]


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    for name, content in SMALL_FILES.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "big.bin").write_bytes(BIG)
    return tmp_path


@pytest.fixture
async def open_conn(docroot: Path) -> AsyncIterator[OpenConn]:
    """Connections on a fresh ``Shared`` each; whatever is left open is aborted after."""
    loop = asyncio.get_running_loop()
    made: list[Conn] = []

    def make(**options: Any) -> Conn:
        config = Config(root=str(docroot), access_log=False, **options)
        shared = build_shared(config, loop)
        protocol = HttpProtocol(shared)
        transport = FakeTransport(loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        conn = Conn(protocol, transport, shared)
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.transport.abort()
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch) -> list[Record]:
    """Every ``Observer.record`` call, in order (on the class: Observer has __slots__)."""
    got: list[Record] = []
    original = Observer.record

    def record(
        self: Observer, peer: str, request: Request, status: int, sent: int, via: str, outcome: str
    ) -> None:
        got.append(Record(peer, request.method, request.target, status, sent, via, outcome))
        original(self, peer, request, status, sent, via, outcome)

    monkeypatch.setattr(Observer, "record", record)
    return got


@pytest.fixture
def short_linger(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    monkeypatch.setattr(protocol_module, "LINGER_SECONDS", 0.02)
    yield 0.02


async def start_big_send_paused(conn: Conn) -> None:
    """GET big.bin; the transport pauses writing once the head and the first chunk are in
    it, as a real one over its high-water mark does: the task stops midway."""
    conn.transport.high_water = BUFFERED_CHUNK
    conn.feed(get("/big.bin"))
    await asyncio.sleep(0)  # the queue is answered: a task is started
    assert conn.protocol.phase is Phase.SENDING
    await conn.settle()


# --- answering in order -----------------------------------------------------------------


async def test_pipelined_gets_are_answered_in_request_order(open_conn: OpenConn) -> None:
    conn = open_conn()
    conn.feed(get("/b.txt") + get("/c.txt") + get("/a.txt"))
    await conn.settle()
    responses = conn.responses()
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.body for r in responses] == [SMALL_FILES[n] for n in ("b.txt", "c.txt", "a.txt")]
    assert all(r.header("connection") is None for r in responses)  # HTTP/1.1 keep-alive
    assert not conn.transport.eof_written and not conn.transport.is_closing()


async def test_requests_are_answered_from_the_next_loop_iteration(open_conn: OpenConn) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt") + get("/b.txt"))
    assert conn.transport.out == b""  # not inside data_received
    assert conn.protocol.responder.owed
    await asyncio.sleep(0)
    assert [r.body for r in conn.responses()] == [SMALL_FILES["a.txt"], SMALL_FILES["b.txt"]]
    assert not conn.protocol.responder.owed


async def test_connection_close_on_second_request_ends_the_connection_there(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt") + get("/b.txt", "Connection: close\r\n") + get("/c.txt"))
    await conn.settle()
    responses = conn.responses()
    assert [r.body for r in responses] == [SMALL_FILES["a.txt"], SMALL_FILES["b.txt"]]
    assert responses[0].header("connection") is None
    assert responses[1].header("connection") == "close"
    assert conn.transport.eof_written
    assert conn.protocol.phase is Phase.CLOSING
    assert [r.target for r in records] == [b"/a.txt", b"/b.txt"]
    conn.feed(get("/c.txt"))  # lingering: read and discarded
    await conn.settle()
    assert len(conn.responses()) == 2


async def test_http10_without_keep_alive_closes_after_the_response(open_conn: OpenConn) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt", version="1.0"))
    await conn.settle()
    [response] = conn.responses()
    assert response.status == 200 and response.body == SMALL_FILES["a.txt"]
    assert response.header("connection") == "close"
    assert conn.transport.eof_written and conn.protocol.phase is Phase.CLOSING


async def test_http10_keep_alive_is_answered_keep_alive(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    keep = "Connection: keep-alive\r\n"
    conn.feed(get("/a.txt", keep, version="1.0"))
    await conn.settle()
    conn.feed(get("/a.txt", keep, version="1.0"))  # the second from the file cache
    await conn.settle()
    responses = conn.responses()
    assert [r.body for r in responses] == [SMALL_FILES["a.txt"]] * 2
    assert [r.header("connection") for r in responses] == ["keep-alive", "keep-alive"]
    assert [r.via for r in records] == ["inline", "cache"]
    assert not conn.transport.eof_written and conn.protocol.phase is Phase.IDLE


# --- phases -----------------------------------------------------------------------------


async def test_phase_is_idle_after_small_responses(open_conn: OpenConn) -> None:
    conn = open_conn()
    assert conn.protocol.phase is Phase.IDLE
    conn.feed(get("/a.txt") + get("/b.txt"))
    await conn.settle()
    assert len(conn.responses()) == 2
    assert conn.protocol.phase is Phase.IDLE


async def test_phase_is_sending_while_a_task_sends_and_idle_after(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn(sendfile=False)
    await start_big_send_paused(conn)
    assert conn.protocol.phase is Phase.SENDING
    assert BIG_SIZE // 2 < len(conn.transport.out) < BIG_SIZE  # stopped midway
    assert records == []
    conn.protocol.resume_writing()
    await conn.settle()
    assert conn.protocol.phase is Phase.IDLE
    [response] = conn.responses()
    assert response.body == BIG
    assert [(r.status, r.sent, r.via, r.outcome) for r in records] == [
        (200, BIG_SIZE, "buffered", "complete")
    ]


async def test_phase_is_closing_after_close_and_closed_after_connection_lost(
    open_conn: OpenConn,
) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt", "Connection: close\r\n"))
    await conn.settle()
    assert conn.protocol.phase is Phase.CLOSING
    conn.transport.close()
    assert conn.protocol.phase is Phase.CLOSING  # connection_lost comes from the loop
    await asyncio.sleep(0)
    assert conn.protocol.phase is Phase.CLOSED
    assert conn.protocol not in conn.shared.connections


async def test_illegal_phase_moves_raise(open_conn: OpenConn) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt", "Connection: close\r\n"))
    await conn.settle()
    assert conn.protocol.phase is Phase.CLOSING
    for illegal in (Phase.IDLE, Phase.SENDING):
        with pytest.raises(IllegalPhaseMove):
            conn.protocol.move(illegal)
        assert conn.protocol.phase is Phase.CLOSING
    conn.protocol.connection_lost(None)
    for illegal in (Phase.IDLE, Phase.SENDING, Phase.CLOSING):
        with pytest.raises(IllegalPhaseMove):
            conn.protocol.move(illegal)
    conn.protocol.move(Phase.CLOSED)  # staying is always allowed
    assert conn.protocol.phase is Phase.CLOSED


# --- reading paused and resumed ---------------------------------------------------------


async def test_reading_is_paused_while_a_task_sends_and_resumed_after(
    open_conn: OpenConn,
) -> None:
    conn = open_conn(sendfile=False)
    transport = conn.transport
    await start_big_send_paused(conn)
    assert not transport.reading and transport.pauses == 1 and transport.resumes == 0
    conn.protocol.resume_writing()
    await conn.settle()
    assert transport.reading and transport.pauses == 1 and transport.resumes == 1
    assert conn.responses()[0].body == BIG


async def test_more_than_max_queued_pipelined_requests_pause_reading(
    open_conn: OpenConn,
) -> None:
    conn = open_conn()
    transport = conn.transport
    conn.feed(get("/a.txt") * (MAX_QUEUED + 1))
    assert not transport.reading and transport.pauses == 1  # before any is answered
    await conn.settle()
    assert len(conn.responses()) == MAX_QUEUED + 1
    assert transport.reading and transport.resumes == 1


async def test_max_queued_pipelined_requests_do_not_pause_reading(open_conn: OpenConn) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt") * MAX_QUEUED)
    await conn.settle()
    assert len(conn.responses()) == MAX_QUEUED
    assert conn.transport.pauses == 0 and conn.transport.reading


# --- deadlines ----------------------------------------------------------------------------


async def test_head_not_complete_in_time_gets_408_and_a_close(
    open_conn: OpenConn, records: list[Record], short_linger: float
) -> None:
    conn = open_conn(header_timeout=0.05)
    conn.feed(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n")
    took = await conn.wait_for(lambda: bool(conn.transport.out))
    assert took >= 0.04
    [response] = conn.responses()
    assert response.status == 408 and response.header("connection") == "close"
    assert conn.transport.eof_written and conn.protocol.phase is Phase.CLOSING
    assert [(r.method, r.status, r.outcome) for r in records] == [("", 408, "complete")]
    await conn.wait_for(lambda: conn.protocol.phase is Phase.CLOSED)  # after the linger
    assert conn.transport.closed and not conn.transport.aborted


async def test_connection_sending_nothing_gets_408_after_header_timeout(
    open_conn: OpenConn,
) -> None:
    conn = open_conn(header_timeout=0.05)
    took = await conn.wait_for(lambda: bool(conn.transport.out))
    assert took >= 0.04
    assert [r.status for r in conn.responses()] == [408]


@pytest.mark.parametrize("noise", [b"\r\n", b"\r\n\r\n\r\n"], ids=["crlf", "crlfs"])
async def test_leading_crlfs_do_not_trade_the_header_timeout_for_longer_ones(
    open_conn: OpenConn, noise: bytes
) -> None:
    """The review's reproduction: a lone CRLF (which llhttp skips without beginning a
    message) moved the deadline from HEAD to SEND (60 s) and then IDLE: 65 s, no 408."""
    conn = open_conn(header_timeout=0.05, send_timeout=30.0, keepalive_timeout=30.0)
    conn.feed(noise)
    assert conn.protocol.deadline.watch is Watch.HEAD
    took = await conn.wait_for(lambda: bool(conn.transport.out))
    assert 0.04 <= took < 2.0
    assert [r.status for r in conn.responses()] == [408]


async def test_trickled_head_gets_408_at_its_original_deadline(open_conn: OpenConn) -> None:
    header_timeout = 0.1
    conn = open_conn(header_timeout=header_timeout, keepalive_timeout=5.0)
    loop = asyncio.get_running_loop()
    conn.feed(get("/a.txt"))  # a first request, so the head below starts the deadline
    await conn.settle()
    assert conn.protocol.deadline.watch is Watch.IDLE
    conn.transport.out.clear()
    start = loop.time()
    conn.feed(b"GET /b.txt HTTP/1.1\r\n")
    answered_at = None
    for i in range(50):  # a field line every 20 ms, for up to 1 s
        await asyncio.sleep(0.02)
        if conn.transport.out:
            answered_at = loop.time() - start
            break
        conn.feed(b"X-%d: y\r\n" % i)
    # Each field line came well within the timeout of the one before: only a deadline
    # that they did not extend can have fired.
    assert answered_at is not None, "trickling extended the header timeout"
    assert header_timeout * 0.9 <= answered_at < header_timeout * 6
    assert [r.status for r in conn.responses()] == [408]


async def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(
    open_conn: OpenConn,
) -> None:
    conn = open_conn(keepalive_timeout=0.05)
    conn.feed(get("/a.txt"))
    await conn.settle()
    assert len(conn.responses()) == 1
    took = await conn.wait_for(lambda: conn.protocol.phase is Phase.CLOSED)
    assert took >= 0.04
    assert conn.transport.closed and not conn.transport.aborted
    assert len(conn.responses()) == 1  # closed without a word


async def test_send_without_progress_is_aborted_and_recorded_timed_out(
    open_conn: OpenConn, records: list[Record]
) -> None:
    send_timeout = 0.05
    conn = open_conn(sendfile=False, send_timeout=send_timeout)
    await start_big_send_paused(conn)
    conn.transport.buffer_size = 1000  # stuck: the client reads nothing
    took = await conn.wait_for(lambda: conn.transport.aborted)
    # The first look at the progress always counts as progress: two timeouts, not one.
    assert took >= send_timeout * 1.5
    await conn.settle()
    assert conn.protocol.phase is Phase.CLOSED
    assert [(r.status, r.via, r.outcome) for r in records] == [(200, "buffered", "timed-out")]
    assert conn.transport.late_writes == 0


async def test_timed_out_send_records_the_body_bytes_handed_to_the_transport(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn(sendfile=False, send_timeout=0.05)
    await start_big_send_paused(conn)
    out = conn.transport.out
    handed_over = len(out) - (out.find(b"\r\n\r\n") + 4)
    assert handed_over == BUFFERED_CHUNK
    conn.transport.buffer_size = 1000
    await conn.wait_for(lambda: conn.transport.aborted)
    await conn.settle()
    assert [(r.sent, r.outcome) for r in records] == [(handed_over, "timed-out")]


async def test_client_gone_mid_send_is_recorded_client_aborted(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn(sendfile=False)
    await start_big_send_paused(conn)
    conn.protocol.connection_lost(ConnectionResetError("peer reset"))
    await conn.settle()
    assert conn.protocol.phase is Phase.CLOSED
    assert conn.protocol.responder.task is None
    assert [(r.status, r.via, r.outcome) for r in records] == [(200, "buffered", "client-aborted")]
    assert not conn.transport.aborted  # the transport is gone already: nothing to abort


async def test_send_making_progress_is_not_aborted(
    open_conn: OpenConn, records: list[Record]
) -> None:
    send_timeout = 0.05
    conn = open_conn(sendfile=False, send_timeout=send_timeout)
    await start_big_send_paused(conn)
    # The client drains slowly: the transport's buffer shrinks between any two looks.
    transport = conn.transport
    transport.buffer_size, transport.drain_per_look = 1_000_000, 100
    looks = transport.looks
    await conn.wait_for(lambda: transport.looks - looks >= 10)  # five send timeouts or more
    assert not transport.aborted and conn.protocol.phase is Phase.SENDING
    transport.buffer_size = transport.drain_per_look = 0
    conn.protocol.resume_writing()
    await conn.settle()
    assert conn.responses()[0].body == BIG
    assert [(r.sent, r.outcome) for r in records] == [(BIG_SIZE, "complete")]
    assert not conn.transport.is_closing()


async def test_partial_head_pipelined_behind_an_inline_response_gets_408(
    open_conn: OpenConn,
) -> None:
    conn = open_conn(header_timeout=0.05, keepalive_timeout=0.05, send_timeout=0.05)
    conn.feed(get("/a.txt") + b"GET /b.txt HTTP/1.1\r\n")
    took = await conn.wait_for(lambda: conn.transport.eof_written)
    assert took >= 0.04
    assert [r.status for r in conn.responses()] == [200, 408]


async def test_partial_head_pipelined_behind_a_task_sent_body_still_times_out(
    open_conn: OpenConn,
) -> None:
    conn = open_conn(
        sendfile=False,
        inline_max=1024,
        header_timeout=0.05,
        keepalive_timeout=0.05,
        send_timeout=0.05,
    )
    conn.feed(get("/a.txt") + b"GET /b.txt HTTP/1.1\r\n")
    await conn.settle()
    assert conn.responses()[0].body == SMALL_FILES["a.txt"]  # sent by a task
    # Nothing more comes: within a few timeouts the head must be refused (408) or the
    # connection closed.
    await conn.wait_for(
        lambda: conn.transport.is_closing() or conn.transport.eof_written, timeout=0.4
    )


# --- limits: refused with a status, a close, and one record -------------------------------

LIMITS = [
    pytest.param(
        b"GET /" + b"a" * (MAX_TARGET_BYTES + 1) + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        414,
        id="target-over-max-target-bytes-414",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS + 1))
        + b"\r\n",
        431,
        id="more-than-max-header-fields-431",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: " + b"v" * MAX_HEAD_BYTES,
        431,
        id="head-over-max-head-bytes-without-end-431",
    ),
    pytest.param(b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", 501, id="unknown-method-501"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, id="garbage-400"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, id="http2-version-505"),
]


@pytest.mark.parametrize("data, status", LIMITS)
async def test_refused_request_gets_its_status_a_close_and_one_record(
    open_conn: OpenConn, records: list[Record], data: bytes, status: int
) -> None:
    conn = open_conn()
    conn.feed(data)
    await conn.settle()
    [response] = conn.responses()
    assert response.status == status
    assert response.body.startswith(str(status).encode())
    assert response.header("connection") == "close"
    assert conn.transport.eof_written and conn.protocol.phase is Phase.CLOSING
    assert [(r.method, r.status, r.outcome) for r in records] == [("", status, "complete")]


async def test_head_over_max_head_bytes_trickled_in_small_reads_is_431(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    conn.feed(b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: ")
    for _ in range(MAX_HEAD_BYTES // 1024 + 1):
        conn.feed(b"v" * 1024)
    await conn.settle()
    assert [r.status for r in conn.responses()] == [431]
    assert [(r.method, r.status) for r in records] == [("", 431)]


async def test_refusal_comes_after_the_responses_pipelined_before_it(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    conn.feed(get("/a.txt") + get("/b.txt") + b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n")
    await conn.settle()
    assert [r.status for r in conn.responses()] == [200, 200, 501]
    assert [(r.method, r.status) for r in records] == [("GET", 200), ("GET", 200), ("", 501)]


# --- one record per response ----------------------------------------------------------------


async def test_each_response_is_recorded_once_in_order(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    targets = ["/a.txt", "/b.txt", "/a.txt", "/b.txt", "/a.txt", "/missing"]
    conn.feed(b"".join(get(t) for t in targets))
    await conn.settle()
    responses = conn.responses()
    assert len(responses) == len(records) == len(targets)
    assert [r.target for r in records] == [t.encode() for t in targets]
    assert [r.status for r in records] == [r.status for r in responses] == [200] * 5 + [404]
    assert [r.via for r in records] == ["inline", "inline", "cache", "cache", "cache", "inline"]
    assert [r.sent for r in records] == [len(r.body) for r in responses]
    assert {(r.peer, r.outcome) for r in records} == {("127.0.0.1", "complete")}


async def test_repeated_small_file_gets_are_served_from_the_cache_after_the_first(
    open_conn: OpenConn, records: list[Record]
) -> None:
    conn = open_conn()
    n = 10
    conn.feed(get("/c.txt") * n)
    await conn.settle()
    assert [r.body for r in conn.responses()] == [SMALL_FILES["c.txt"]] * n
    assert [r.via for r in records] == ["inline"] + ["cache"] * (n - 1)
