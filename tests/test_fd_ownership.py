"""Every open file has one owner that closes it once, whatever is cancelled wherever.

Method. The real ``HttpProtocol`` runs in-process on a fresh event loop per case (the
stdlib loop and uvloop), over a real ``socket.socketpair()``: the server's end goes to
``loop.connect_accepted_socket``, the test is the client on the other end. The client
sends one request and lets the loop run exactly ``k`` iterations (``asyncio.sleep(0)``
is one loop turn), reading at most ``READ_PER_TURN`` bytes per turn through small socket
buffers, so that a large body is really still being sent. Then it cuts the connection
there, the way a client does (it closes its end; with unread data AF_UNIX answers the
server ECONNRESET, without it EOF and EPIPE) or the way the server itself does on a
timeout (``HttpProtocol.abort``: cancel the task, abort the transport once it unwound).
Sweeping k = 0, 1, 2, ... lands the cut on every await point a response passes through,
in order: the request not read yet, read but not answered, the planning or sending task
created but not started, the deferred directory scan or SHA-256 digest in a worker
thread, the page-cache prefetch in a worker thread, the head, each wait for the client
to drain the socket, a task finished whose done-callback has not run. A sweep ends at
``MAX_TURNS``, or as soon as the response went out whole before the cut.

Worker threads make loop turns a poor clock (a thread may wait many turns for the GIL),
so ``WorkerThreads`` counts the jobs of every thread pool of the process (the loop's
default executor and the server's own pools), and after every turn but the last the test
waits, in real time, for the jobs started so far to finish. For the same reason the
digest's real-time wait (``handler.DIGEST_WAIT_SECONDS``) is set per case: long (the
response waits for the hash) or zero (it goes without, the hash goes on). The sweep is
then the same on every run, and the cut still lands while a job started in the last
turn runs.

After each cut the loop gets ``SETTLE_TURNS`` turns, then up to ``SETTLE_SECONDS`` of
real time, to unwind (worker threads finish their reads), and then:

* the process holds exactly the descriptors it held before the cut (``/proc/self/fd``):
  the file, both ends of the socket pair, the sendfile path's dup of the socket, the
  digest's dup of the file and the scan's directory are all closed;
* every ``OpenFile`` the responder held during the request is closed;
* the connection is closed and gone from ``Shared.connections``;
* no task is pending, the loop's exception handler got nothing, nothing was logged at
  ERROR, and the response was recorded at most once.

The sweep's cut can land before a task's first step only when the server itself aborts;
``test_a_task_cancelled_before_its_first_step_closes_its_file`` pins that case for a lost
connection too, for each task a response runs (planning, then sending, for a digest).

A worker thread that reads a request's file can outlive the task that started it: the
two ``..._thread_...`` tests hold such a job right after it started (as a slow disk
would), abort the connection, let the file's number go to another file, and let the job
go on. Every thread reads a dup of its own (the digest's, the prefetch's, the buffered
path's cold reads): none can read whatever file got the number.

Two bugs this module found, and pins: the prefetch used to read the request's own
descriptor; and a server abort that landed while the digest's value was ready, before
the planning task resumed, left the connection open until the send deadline.

What this module cannot cut: ``transport.abort()`` called from outside while the stdlib
loop's ``loop.sendfile`` runs trips an asyncio bug (``InvalidStateError`` in
``_call_connection_lost``; see ``HttpProtocol.abort``), which is why the server never
does that; nor does asyncio itself, since the transport neither reads nor writes then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from server.config import Config
from server.connection.phases import Phase
from server.connection.protocol import HttpProtocol
from server.connection.shared import Shared
from server.files.digests import XATTR
from server.files.lookup import OpenFile
from server.observe.record import COMPLETE, Observer
from server.process.app import build_shared
from server.respond import handler

from .pagecache import evict, resident_pages

try:
    import uvloop
except ImportError:  # pragma: no cover - a dependency everywhere but Windows
    uvloop = None

T = TypeVar("T")
R = TypeVar("R")

BIG = 3 * 1024 * 1024 + 4321  # never sent whole within a sweep: always in progress
SMALLISH = 256 * 1024 + 77  # above the inline limit (64 KiB): a send task; a deferred digest
LISTED_FILES = 40
MAX_TURNS = 40  # cuts after k = 0 .. MAX_TURNS - 1 loop turns
READ_PER_TURN = 16 * 1024  # what the slow client reads per loop turn
SOCKET_BUFFER = 16 * 1024  # SO_SNDBUF of the server's end, SO_RCVBUF of the client's
SETTLE_TURNS = 50  # loop turns to unwind in (worker threads finish meanwhile)
SETTLE_SECONDS = 0.25  # then real time, for what is still closing
COLD_ATTEMPTS = 20  # requests for a cold file until one's RWF_NOWAIT read misses for sure
COLD_PAUSE = 0.02  # between them: hits come in bursts (tests/pagecache.py)
JOB_SECONDS = 5.0  # no worker thread job of this module takes anywhere near this long
RESULT_HANDOFF_SECONDS = 0.001  # for a finished job's result to be handed to the loop

# --- the cases -------------------------------------------------------------------------------

needs_uvloop = pytest.mark.skipif(
    uvloop is None, reason="uvloop is not importable here: its send paths cannot be run"
)


def _new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        assert uvloop is not None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@dataclass(frozen=True)
class SendPath:
    loop: str  # "asyncio" or "uvloop"
    sendfile: bool  # Config.sendfile
    name: str  # the large-body path build_shared must choose for them
    sender: str  # the coroutine function that sends on it


SEND_PATHS = [
    SendPath("asyncio", True, "loop.sendfile", "send_loop_sendfile"),
    SendPath("asyncio", False, "buffered", "send_buffered"),
    SendPath("uvloop", True, "sendfile", "send_sendfile"),
    SendPath("uvloop", False, "buffered", "send_buffered"),
]


@dataclass(frozen=True)
class Body:
    """One kind of response: what is asked for, of which file, with which options."""

    target: str
    headers: str = ""
    autoindex: bool = False  # a directory listing, planned by a deferred scan
    digest: bool = False  # a Repr-Digest not known yet, planned by a deferred hash
    cold: bool = False  # dropped from the page cache before each cut: the prefetch runs
    # How long the response waits for the digest (handler.DIGEST_WAIT_SECONDS, a bound in
    # real time, set here so that loop turns, not the clock, decide how far a request gets).
    digest_wait: float = 0.0
    sent_within_a_sweep: bool = True  # goes out whole within MAX_TURNS turns

    @property
    def tasks(self) -> int:
        """Tasks the response runs: a deferred plan first, then (a file) a send."""
        return 2 if self.digest else 1

    def request(self) -> bytes:
        return f"GET {self.target} HTTP/1.1\r\nHost: fd.test\r\n{self.headers}\r\n".encode()


BODIES: dict[str, Body] = {
    "whole-file": Body("/big.bin", sent_within_a_sweep=False),
    "whole-file-cold": Body("/cold.bin", cold=True),
    "single-range": Body("/big.bin", "Range: bytes=100000-263839\r\n"),
    "multipart-ranges": Body("/big.bin", "Range: bytes=5-81924, 2000000-2081919\r\n"),
    "deferred-digest": Body("/hash-me.bin", digest=True, digest_wait=JOB_SECONDS),
    "deferred-digest-late": Body("/hash-me.bin", digest=True, digest_wait=0.0),
    "deferred-listing": Body("/listed/", autoindex=True),
}


@dataclass(frozen=True)
class Case:
    path: SendPath
    body: Body

    def config(self, root: Path) -> Config:
        return Config(
            root=str(root),
            access_log=False,
            sendfile=self.path.sendfile,
            autoindex=self.body.autoindex,
            digest=self.body.digest,
        )

    def first_task(self) -> str:
        deferred = self.body.autoindex or self.body.digest
        return "_plan_later" if deferred else self.path.sender


class ConnectionLeftOpen(AssertionError):
    """The cut was made, every task and file is done with, and the connection is open."""


def _cases() -> Iterator[tuple[str, Case, list[pytest.MarkDecorator]]]:
    for path in SEND_PATHS:
        marks = [needs_uvloop] if path.loop == "uvloop" else []
        for body_name, body in BODIES.items():
            if body.autoindex:
                if path.sendfile:
                    continue  # a listing is written inline: no send path plays a part
                case_id = f"{path.loop}-listing"
            else:
                case_id = f"{path.loop}-{path.name}-{body_name}"
            yield case_id, Case(path, body), marks


CASES = [pytest.param(case, id=case_id, marks=marks) for case_id, case, marks in _cases()]
CUTS = ["client-disconnects", "server-aborts"]


def _sweeps() -> Iterator[Any]:
    for case_id, case, marks in _cases():
        for cut in CUTS:
            yield pytest.param(case, cut, id=f"{case_id}-{cut}", marks=marks)


def _set_digest_wait(monkeypatch: pytest.MonkeyPatch, body: Body) -> None:
    if body.digest:
        monkeypatch.setattr(handler, "DIGEST_WAIT_SECONDS", body.digest_wait, raising=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served root. No digest of its files is known to any cut: each builds its own
    ``Shared``, and with it its own digest cache, and drops the one kept in the file."""
    root = tmp_path_factory.mktemp("fd-ownership") / "root"
    (root / "listed").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(BIG))
    (root / "hash-me.bin").write_bytes(os.urandom(SMALLISH))
    (root / "decoy.bin").write_bytes(b"another file, opened after the request's was closed")
    with open(root / "cold.bin", "wb") as f:
        f.write(os.urandom(SMALLISH))
        f.flush()
        os.fsync(f.fileno())  # clean pages, which posix_fadvise(DONTNEED) can drop
    for i in range(LISTED_FILES):
        (root / "listed" / f"file-{i:03}.txt").write_bytes(b"x" * i)
    return root


def _page_cache_can_be_dropped(directory: Path) -> bool:
    """Whether a file written here can be dropped from the page cache, as RWF_NOWAIT sees
    it (not on tmpfs, say: there the prefetch never runs). Probed on a file of its own:
    a missed RWF_NOWAIT read starts readahead, which would warm the file probed."""
    probe = directory / "page-cache-probe"
    with open(probe, "wb") as f:
        f.write(os.urandom(64 * 1024))
        f.flush()
        os.fsync(f.fileno())
    try:
        for _ in range(COLD_ATTEMPTS):  # a miss's readahead can finish before the read looks
            if not evict(probe, timeout=2.0):
                return False
            fd = os.open(probe, os.O_RDONLY)
            try:
                os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
            except BlockingIOError:
                return True
            except (OSError, AttributeError):
                return False
            finally:
                os.close(fd)
            time.sleep(COLD_PAUSE)
        return False
    finally:
        probe.unlink()


# --- what the process, the loop and its threads hold -----------------------------------------


def _open_fds() -> dict[int, str]:
    """This process's descriptors and what they name."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # closed meanwhile: the listing's own descriptor
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


JobHook = Callable[[Callable[[], Any]], None]


class WorkerThreads:
    """Counts the jobs of every thread pool of the process (the loop's default executor,
    the server's own pools for reads, listings and hashing) while ``installed``.

    ``hook``, if set, runs in the worker thread before each job, with the job.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.busy = 0  # jobs submitted and not finished (or cancelled)
        self.hook: JobHook | None = None

    @contextmanager
    def installed(self) -> Iterator[WorkerThreads]:
        submit = ThreadPoolExecutor.submit

        def counted_submit(
            pool: ThreadPoolExecutor, fn: Callable[..., R], /, *args: Any, **kwargs: Any
        ) -> Future[R]:
            with self._changed:
                self.busy += 1
            try:
                future = submit(pool, self._run, functools.partial(fn, *args, **kwargs))
            except BaseException:
                self._finished(None)
                raise
            future.add_done_callback(self._finished)
            return future

        ThreadPoolExecutor.submit = counted_submit  # type: ignore[method-assign]
        try:
            yield self
        finally:
            ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]

    def _run(self, job: Callable[[], R]) -> R:
        if self.hook is not None:
            self.hook(job)
        return job()

    def _finished(self, _future: Future[Any] | None) -> None:
        with self._changed:
            self.busy -= 1
            self._changed.notify_all()

    def finish_started_jobs(self) -> None:
        """Block until every job submitted so far is finished and its result handed on."""
        with self._changed:
            if not self.busy:
                return
            assert self._changed.wait_for(lambda: not self.busy, JOB_SECONDS), "a job hangs"
        time.sleep(RESULT_HANDOFF_SECONDS)  # the job's done-callbacks, after ours, wake the loop


@dataclass
class LoopUnderTest:
    loop: asyncio.AbstractEventLoop
    threads: WorkerThreads
    errors: list[dict[str, Any]]  # every context the loop's exception handler got


async def _open_the_loops_own_descriptors(loop: asyncio.AbstractEventLoop) -> None:
    """One throwaway connection, so what a loop opens once and lazily is open before any
    count is taken (libuv keeps a reserve descriptor, on /dev/null, from its first
    stream on, to shed connections at EMFILE)."""
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    transport.close()
    theirs.close()
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)


def _run_on_fresh_loop(loop_name: str, main: Callable[[LoopUnderTest], Awaitable[T]]) -> T:
    """Run ``main`` on a new loop that records what its exception handler is given; then
    stop its threads, close it, and check that nothing was reported, not even by tasks or
    futures collected afterwards."""
    loop = _new_loop(loop_name)
    lut = LoopUnderTest(loop, WorkerThreads(), [])
    loop.set_exception_handler(lambda _loop, context: lut.errors.append(context))
    try:
        with lut.threads.installed():
            loop.run_until_complete(_open_the_loops_own_descriptors(loop))
            result = loop.run_until_complete(main(lut))
            lut.threads.finish_started_jobs()
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    gc.collect()  # "Task was destroyed but it is pending!" is reported on collection
    assert not lut.errors, f"the loop's exception handler was called: {lut.errors}"
    return result


class _ServerErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _no_server_errors_logged() -> Iterator[None]:
    handler = _ServerErrors()
    logger = logging.getLogger("zerocopy")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


class _RecordingObserver(Observer):
    """The server's observer, also keeping each response's outcome."""

    __slots__ = ("outcomes",)

    def record(
        self, peer: str, request: Any, status: int, sent: int, via: str, outcome: str
    ) -> None:
        self.outcomes.append(outcome)
        super().record(peer, request, status, sent, via, outcome)


def _record_outcomes(shared: Shared) -> list[str]:
    old = shared.observer
    observer = _RecordingObserver(old.loop, old.stats, old.access_log, old.trusted, old.timed)
    observer.outcomes = []
    shared.observer = observer
    return observer.outcomes


# --- one connection, one request, one cut ----------------------------------------------------


@dataclass
class Connection:
    """The server's protocol on one end of a socket pair, the test on the other."""

    lut: LoopUnderTest
    case: Case
    fds_before: dict[int, str]
    shared: Shared
    transport: asyncio.BaseTransport
    protocol: HttpProtocol
    client: socket.socket
    outcomes: list[str]
    received: int = 0
    files_held: list[OpenFile] = field(default_factory=list)
    tasks_run: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, lut: LoopUnderTest, case: Case, root: Path) -> Connection:
        if case.body.cold:
            cold = root / case.body.target.lstrip("/")
            assert evict(cold), f"{cold} stays in the page cache"
        fds_before = _open_fds()
        shared = build_shared(case.config(root), lut.loop)  # fresh caches, digests too
        # Digests are also kept with the files (an xattr): forget that one too.
        with contextlib.suppress(OSError):
            os.removexattr(root / "hash-me.bin", XATTR)
        assert shared.send_path == case.path.name
        outcomes = _record_outcomes(shared)
        server_end, client = socket.socketpair()
        server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        client.setblocking(False)
        transport, protocol = await lut.loop.connect_accepted_socket(
            lambda: HttpProtocol(shared), server_end
        )
        assert isinstance(protocol, HttpProtocol)
        client.send(case.body.request())
        return cls(lut, case, fds_before, shared, transport, protocol, client, outcomes)

    async def turn(self, finish_started_jobs: bool = True) -> None:
        """One loop turn; the slow client reads a little; worker threads catch up."""
        await asyncio.sleep(0)
        responder = self.protocol.responder
        held = responder._owned  # the file of the task in flight: the one to close it
        if held is not None and held not in self.files_held:
            self.files_held.append(held)
        task = responder.task
        if task is not None and task not in self.tasks_run:
            self.tasks_run.append(task)
        with suppress(BlockingIOError, ConnectionError):
            self.received += len(self.client.recv(READ_PER_TURN))
        if finish_started_jobs:
            self.lut.threads.finish_started_jobs()

    @property
    def sent_whole(self) -> bool:
        return COMPLETE in self.outcomes

    def client_disconnects(self) -> None:
        self.client.close()

    def server_aborts(self) -> None:
        self.protocol.abort()

    async def check_settled(self, wait_for_threads: bool = True) -> None:
        """Let the loop and the worker threads unwind, then check that all was closed."""
        self.client.close()
        loop = self.lut.loop
        deadline = None
        for turn in itertools.count():
            fds = _open_fds()
            pending = _other_tasks()
            closed = self.protocol.phase is Phase.CLOSED
            idle = not wait_for_threads or not self.lut.threads.busy
            if closed and idle and len(fds) == len(self.fds_before) and not pending:
                break
            if turn < SETTLE_TURNS:
                if turn == SETTLE_TURNS // 2 and wait_for_threads:
                    self.lut.threads.finish_started_jobs()  # a hash holds its dup till done
                await asyncio.sleep(0)
                continue
            deadline = deadline or loop.time() + SETTLE_SECONDS
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.005)
        left = {fd: name for fd, name in fds.items() if self.fds_before.get(fd) != name}
        assert not pending, f"tasks left pending: {pending}"
        assert all(f.closed for f in self.files_held), f"files left open: {self.files_held}"
        assert not self.lut.errors, f"the loop's exception handler was called: {self.lut.errors}"
        assert len(self.outcomes) <= 1, f"one response recorded more than once: {self.outcomes}"
        if self.protocol.phase is not Phase.CLOSED:
            phase = self.protocol.phase.value
            raise ConnectionLeftOpen(f"connection {phase}, not closed; descriptors open: {left}")
        assert not self.shared.connections
        assert len(fds) == len(self.fds_before), f"descriptors left open: {left}"


async def _cut_after(lut: LoopUnderTest, case: Case, root: Path, turns: int, cut: str) -> bool:
    """One request, ``turns`` loop turns, the cut, the checks; True if the response had
    gone out whole before the cut."""
    conn = await Connection.open(lut, case, root)
    for i in range(turns):
        await conn.turn(finish_started_jobs=i < turns - 1)
    sent_whole = conn.sent_whole
    if cut == "client-disconnects":
        conn.client_disconnects()
    else:
        conn.server_aborts()
    try:
        await conn.check_settled()
    except ConnectionLeftOpen:
        conn.transport.abort()  # what the cut was to lead to; all else must then be closed
        await conn.check_settled()
        raise
    return sent_whole


@pytest.mark.parametrize(("case", "cut"), list(_sweeps()))
def test_a_cut_after_any_number_of_loop_turns_closes_every_descriptor(
    case: Case, cut: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_digest_wait(monkeypatch, case.body)

    async def sweep(lut: LoopUnderTest) -> tuple[int | None, list[int]]:
        left_open: list[int] = []  # cuts that left the connection open: the others go on
        for turns in range(MAX_TURNS):
            try:
                if await _cut_after(lut, case, root, turns, cut):
                    return turns, left_open
            except ConnectionLeftOpen:
                left_open.append(turns)
        return None, left_open

    with _no_server_errors_logged():
        sent_whole_after, left_open = _run_on_fresh_loop(case.path.loop, sweep)
    if case.body.sent_within_a_sweep:
        # Past this, every await point of the response was cut at: the sweep saw it all.
        assert sent_whole_after is not None, "the response never went out whole"
    else:
        assert sent_whole_after is None, "the body was to be still in flight at every cut"
    if left_open:
        raise ConnectionLeftOpen(f"cuts after {left_open} loop turns left the connection open")


# --- a task cancelled before its first step --------------------------------------------------


async def _lose_before_task_starts(
    lut: LoopUnderTest, case: Case, root: Path, index: int, how: str
) -> list[str]:
    """Run the request until its ``index``-th task is created, and lose the connection in
    that same loop turn, before the task's first step; the coroutines of the tasks seen."""
    conn = await Connection.open(lut, case, root)
    for _ in range(MAX_TURNS):
        await conn.turn()
        if len(conn.tasks_run) > index or conn.sent_whole:
            break
    assert len(conn.tasks_run) > index, f"no task #{index} within {MAX_TURNS} loop turns"
    task = conn.tasks_run[index]
    assert conn.protocol.responder.task is task
    assert inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_CREATED
    names = [t.get_coro().__name__ for t in conn.tasks_run]
    if case.body.autoindex:
        assert not conn.files_held  # a listing holds no file, only its scan a directory
    else:
        assert conn.files_held, "the task was to own the open file"
    if how == "connection-lost":
        conn.protocol.connection_lost(None)  # as the loop reports a reset in this turn
        conn.transport.abort()  # and the transport's own connection_lost comes later
    else:
        conn.server_aborts()
    await conn.check_settled()
    assert task.cancelled()
    return names


@pytest.mark.parametrize("how", ["connection-lost", "server-aborts"])
@pytest.mark.parametrize("case", CASES)
def test_a_task_cancelled_before_its_first_step_closes_its_file(
    case: Case, how: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_digest_wait(monkeypatch, case.body)

    async def each_task(lut: LoopUnderTest) -> list[str]:
        names: list[str] = []
        for index in range(case.body.tasks):
            names = await _lose_before_task_starts(lut, case, root, index, how)
        return names

    with _no_server_errors_logged():
        names = _run_on_fresh_loop(case.path.loop, each_task)
    assert names[0] == case.first_task()
    if case.body.digest:
        assert names == ["_plan_later", case.path.sender]


# --- a worker thread outliving the file's owner ----------------------------------------------

Identity = tuple[int, int]  # (st_dev, st_ino)


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino


@contextmanager
def _thread_reads_recorded() -> Iterator[list[tuple[int, Identity | OSError]]]:
    """Each ``os.preadv`` made off the main thread (prefetch, hashing): the descriptor and
    what it named at that moment."""
    preadv = os.preadv
    main = threading.main_thread()
    reads: list[tuple[int, Identity | OSError]] = []

    def recorded_preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        if threading.current_thread() is not main:
            try:
                reads.append((fd, _identity(os.fstat(fd))))
            except OSError as exc:
                reads.append((fd, exc))
        return preadv(fd, buffers, offset, flags)

    os.preadv = recorded_preadv
    try:
        yield reads
    finally:
        os.preadv = preadv


async def _abort_while_a_thread_job_is_held(lut: LoopUnderTest, case: Case, root: Path) -> None:
    """Hold the request's first worker-thread job right after it started, as a slow disk
    holds a read; abort the connection meanwhile (the send deadline, or shutdown's:
    ``HttpProtocol.abort``), which closes the request's file; open files until one gets
    that file's number, as a busy server does; then let the job go on."""
    started = threading.Event()
    go_on = threading.Event()

    def hold(_job: Callable[[], Any]) -> None:
        if not started.is_set():
            started.set()
            go_on.wait(JOB_SECONDS)

    lut.threads.hook = hold
    for _ in range(COLD_ATTEMPTS if case.body.cold else 1):
        conn = await Connection.open(lut, case, root)
        for _ in range(MAX_TURNS):
            await conn.turn(finish_started_jobs=False)
            if lut.threads.busy:  # submitted: it starts once a worker thread gets the GIL
                started.wait(JOB_SECONDS)
                break
        if started.is_set():
            break
        # The file was cold, and still the server's RWF_NOWAIT reads all hit: each miss
        # starts readahead, which the read can find done (tests/pagecache.py). Again.
        conn.server_aborts()
        await conn.check_settled()
        await asyncio.sleep(COLD_PAUSE)
    assert started.is_set(), "no worker-thread job started"
    assert len(conn.files_held) == 1
    file_fd = conn.files_held[0].fd
    conn.server_aborts()
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)
    assert conn.files_held[0].closed, "the file's owner did not close it"
    others: list[int] = []
    try:
        while len(others) < 16 and file_fd not in others:
            others.append(os.open(root / "decoy.bin", os.O_RDONLY))
        assert file_fd in others
        go_on.set()
        lut.threads.finish_started_jobs()
    finally:
        go_on.set()
        for other in others:
            os.close(other)
    await conn.check_settled()


class ReadAfterClose(AssertionError):
    """A worker thread read a descriptor after the file's owner had closed it."""


def _check_threads_read_only(
    served: Path, reads: list[tuple[int, Identity | OSError]], reader: str, must_read: bool = True
) -> None:
    """Every read the thread made was of ``served``. A prefetch whose request gave up
    before it started reads nothing at all (its ThreadFd is closed unclaimed): fine."""
    assert reads or not must_read, f"no {reader} read in a worker thread"
    expected = _identity(os.stat(served))
    for fd, named in reads:
        if isinstance(named, OSError):
            raise ReadAfterClose(f"fd {fd} was closed under the {reader} thread: {named}")
        if named != expected:
            raise ReadAfterClose(f"fd {fd} named another file when the {reader} thread read it")


def _path_params() -> list[Any]:
    return [
        pytest.param(p, id=f"{p.loop}-{p.name}", marks=[needs_uvloop] if p.loop == "uvloop" else [])
        for p in SEND_PATHS
    ]


@pytest.mark.parametrize("path", _path_params())
def test_a_digest_thread_reads_its_own_descriptor_after_the_file_is_closed(
    path: SendPath, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest's thread is given a dup (``DigestCache``): the request's file can close,
    its number go to another file, and the hash still reads the file it was asked to."""
    case = Case(path, BODIES["deferred-digest"])
    _set_digest_wait(monkeypatch, case.body)

    async def main(lut: LoopUnderTest) -> None:
        await _abort_while_a_thread_job_is_held(lut, case, root)

    with _no_server_errors_logged(), _thread_reads_recorded() as reads:
        _run_on_fresh_loop(path.loop, main)
    _check_threads_read_only(root / "hash-me.bin", reads, "hashing")


@pytest.mark.parametrize("path", _path_params())
def test_a_prefetch_thread_reads_only_the_file_it_was_given(path: SendPath, root: Path) -> None:
    """The same for the page-cache prefetch of a cold window, on every send path: a slow
    disk can hold it long (8 MiB at 20 MiB/s take 0.4 s) while the send is aborted."""
    case = Case(path, BODIES["whole-file-cold"])
    if not _page_cache_can_be_dropped(root):
        pytest.skip("files cannot be dropped from the page cache here: no prefetch runs")

    async def main(lut: LoopUnderTest) -> None:
        await _abort_while_a_thread_job_is_held(lut, case, root)

    with _no_server_errors_logged(), _thread_reads_recorded() as reads:
        _run_on_fresh_loop(path.loop, main)
    _check_threads_read_only(root / "cold.bin", reads, "prefetch", must_read=False)


def test_thread_fd_is_closed_once_by_whoever_holds_it_last(tmp_path: Path) -> None:
    """ThreadFd (files/pagecache.py): the job closes the dup it claimed when done, even if
    the request gave up meanwhile; the request closes it if the job never claimed it."""
    from server.files.pagecache import ThreadFd

    f = tmp_path / "x"
    f.write_bytes(b"abc")
    with open(f, "rb") as original:
        started = len(os.listdir("/proc/self/fd"))
        running = ThreadFd(original.fileno())
        own = running.claim()
        assert own >= 0 and os.pread(own, 3, 0) == b"abc"
        running.abandon()  # the request gives up while the job reads: the dup stays
        assert os.pread(own, 3, 0) == b"abc"
        running.release()
        assert len(os.listdir("/proc/self/fd")) == started
        never = ThreadFd(original.fileno())
        never.abandon()  # cancelled before the job started: closed here
        assert never.claim() == -1
        never.release()  # a late release is harmless
        assert len(os.listdir("/proc/self/fd")) == started


def test_a_file_made_cold_has_no_page_resident(root: Path) -> None:
    """The tests above rely on ``evict``: a file just read is resident, and none of it after."""
    if not _page_cache_can_be_dropped(root):
        pytest.skip("files cannot be dropped from the page cache here")
    cold = root / "cold.bin"
    fd = os.open(cold, os.O_RDONLY)
    try:
        os.pread(fd, SMALLISH, 0)
        assert resident_pages(fd) > 0
        assert evict(cold)
        assert resident_pages(fd) == 0
    finally:
        os.close(fd)
