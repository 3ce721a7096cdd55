"""One response lifecycle: a connection's requests answered in order, each recorded once.

``Responder`` keeps the connection's queue of complete requests and answers them strictly
in request order, from the next loop iteration:

* ``_respond`` answers from the file cache, or plans (``Handler.plan``);
* ``_deliver`` writes a plan inline (small or no body), or starts a send task;
* a task's end, however it came (done, failed, cancelled before or after its first step),
  is handled in one done-callback (``_sent``, or ``_planned`` for a deferred plan): it
  closes the task's file (``OpenFile.close`` is idempotent) and records the response;
* ``_finish`` records a response that went out whole and closes the connection if it
  was the last. ``Observer.record`` is called from here and nowhere else.

The connection (``protocol.HttpProtocol``) owns the phase, the deadline and the
transport's reading and closing; the responder asks it for those.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..files.lookup import OpenFile
from ..http.head import DATE_CLOCK, Fields
from ..http.plan import ResponsePlan, plan_error
from ..http.request import Request
from ..observe.record import CLIENT_ABORTED, COMPLETE, SERVER_ERROR
from ..respond.handler import RETRY_AFTER, Deferred, Planned
from ..send import ClientGone, Pacer, SendAborted, SendBody, Tally
from ..send.buffered import send_buffered
from ..send.inline import render_inline
from .phases import Phase

if TYPE_CHECKING:
    from .channel import TransportChannel
    from .protocol import HttpProtocol

log = logging.getLogger("zerocopy.protocol")
T = TypeVar("T")

# Requests queued beyond this many (pipelined in one read) pause reading until answered.
MAX_QUEUED = 32


def _not_attached(data: bytes | bytearray) -> None:
    raise RuntimeError("no transport yet")


class Refusal:
    """A queued error response that ends the connection, answered in request order."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status


class Responder:
    """Answers one connection's requests in order; at most one by a task at a time."""

    __slots__ = (
        "_abort_after_task",
        "_cancel_outcome",
        "_cancelled",
        "_owned",
        "_record_response",
        "_scheduled",
        "_write",
        "channel",
        "conn",
        "loop",
        "pipeline",
        "shared",
        "tally",
        "task",
    )

    def __init__(self, conn: HttpProtocol) -> None:
        self.conn = conn
        self.shared = conn.shared
        self.loop = conn.loop
        self.pipeline: list[Request | Refusal] = []  # read, not answered (list: 56 B idle)
        self._scheduled: asyncio.Handle | None = None
        self.task: asyncio.Task[Any] | None = None  # planning or sending a response
        self.tally: Tally | None = None  # the body in flight
        self._owned: OpenFile | None = None  # the file of the task in flight
        self._cancel_outcome = CLIENT_ABORTED  # how a cancelled send task is recorded
        self._cancelled = False
        self._abort_after_task = False
        self._record_response = self.shared.observer.record
        self.channel: TransportChannel | None = None
        self._write: Callable[[bytes | bytearray], None] = _not_attached

    def attach(self, channel: TransportChannel) -> None:
        """The connection's transport is there: responses may go out."""
        self.channel = channel
        self._write = channel.write

    @property
    def owed(self) -> bool:
        """Requests wait to be answered (queued, or about to be)."""
        return bool(self.pipeline) or self._scheduled is not None

    # --- the queue ----------------------------------------------------------------------

    def enqueue_request(self, request: Request) -> None:
        """A complete request from the reader (its one callback per request)."""
        conn = self.conn
        phase = conn.phase
        if phase is Phase.CLOSING or phase is Phase.CLOSED:
            return  # pipelined behind a response that closes the connection
        if not request.keep_alive:
            conn.no_more_requests = True
        # enqueue(), written out: this runs once per request.
        pipeline = self.pipeline
        pipeline.append(request)
        if phase is not Phase.IDLE or len(pipeline) > MAX_QUEUED:
            conn.pause_reading()
        if self._scheduled is None and phase is Phase.IDLE and not self.channel.write_paused:  # type: ignore[union-attr]  # attached before any request
            self._scheduled = self.loop.call_soon(self._run_scheduled)

    def enqueue(self, item: Request | Refusal) -> None:
        """Queue a request or a refusal; answered from the next loop iteration.

        Answering from call_soon instead of inside data_received batches the reads of
        every ready connection before their writes: +30 % req/s on 4 KiB files under
        wrk -c50 (measured, see README), at a loop iteration of latency.
        """
        pipeline = self.pipeline
        pipeline.append(item)
        idle = self.conn.phase is Phase.IDLE
        if not idle or len(pipeline) > MAX_QUEUED:
            self.conn.pause_reading()
        if self._scheduled is None and idle and not self.channel.write_paused:  # type: ignore[union-attr]  # attached before any request
            self._scheduled = self.loop.call_soon(self._run_scheduled)

    def _run_scheduled(self) -> None:
        self._scheduled = None
        self.run()

    def run(self) -> None:
        """Answer queued requests until one needs a task, writing pauses, or none is left."""
        conn = self.conn
        channel = self.channel
        assert channel is not None
        pipeline = self.pipeline
        while pipeline and conn.phase is Phase.IDLE and not channel.write_paused:
            item = pipeline.pop(0)
            if isinstance(item, Refusal):
                self.pipeline.clear()
                self.refuse(item.status, conn.reader.request)
                return
            self._respond(item)
        conn.answered()

    def last_closes(self) -> None:
        """The last request queued is the connection's last: its response says so."""
        for item in reversed(self.pipeline):
            if isinstance(item, Request):
                item.keep_alive = False
                return

    def drop(self) -> None:
        """The connection is lost or closing: nothing more is answered."""
        self.pipeline.clear()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def cancel(self, outcome: str, abort_transport: bool) -> bool:
        """Cancel the task in flight, if any: its done-callback records it as ``outcome``
        (the first cancel's: a timeout's abort, then the connection_lost it causes, is a
        timeout) and, if asked, aborts the transport once the task has unwound."""
        task = self.task
        if task is None or task.done():
            return False
        if not self._cancelled:
            self._cancelled = True
            self._cancel_outcome = outcome
        self._abort_after_task = self._abort_after_task or abort_transport
        task.cancel()
        return True

    # --- one response -------------------------------------------------------------------

    def _respond(self, request: Request) -> None:
        shared = self.shared
        if shared.clients.cap and not self.conn.count_client(request):
            self.refuse(429, request, RETRY_AFTER)
            return
        close = not request.keep_alive or shared.shutting_down
        cached = shared.handler.respond_cached(request)
        if cached is not None:
            # The hot path of a small-file server, written out: _finish, inline.
            tail = DATE_CLOCK.tail(close, request.version)
            if request.method == "HEAD":
                self._write(cached.head + tail)
                sent = 0
            else:
                body = cached.body
                self._write(b"".join((cached.head, tail, body)))
                sent = len(body)
            self._record_response(self.conn.peer, request, 200, sent, "cache", COMPLETE)
            if close:
                self.conn.close_gracefully()
            return
        try:
            planned = shared.handler.plan(request, close)
        except Exception:
            log.exception("failed to plan a response")
            planned = plan_error(500, request, close=True), None
        if isinstance(planned, Deferred):
            # A directory scan or a digest to wait for: off the loop, in request order.
            planning = _plan_later(request, planned)
            self._start(planning, lambda task: self._planned(task, request), planned.file)
            return
        self._deliver(request, *planned)

    def _planned(self, task: asyncio.Task[Planned], request: Request) -> None:
        """A planning task ended: deliver its plan, or (cancelled) close what it held."""
        held = self._end_task()
        if task.cancelled():
            # No status was decided, so there is no response to record.
            if held is not None:
                held.close()
            self._after_cancel()
            return
        plan, file = task.result()
        if held is not None and held is not file:
            held.close()
        conn = self.conn
        if conn.phase is not Phase.SENDING:  # aborted meanwhile
            if file is not None:
                file.close()
            # The cancel came too late to interrupt the task (on Python < 3.12, wait_for
            # returns a result that is ready rather than raise): finish the abort here.
            self._after_cancel()
            return
        conn.move(Phase.IDLE)
        self._deliver(request, plan, file)
        if conn.phase is Phase.IDLE:
            self.run()

    def _deliver(self, request: Request, plan: ResponsePlan, file: OpenFile | None) -> None:
        """Send a plan: in one write when its body is small (or absent), else by a task."""
        shared = self.shared
        conn = self.conn
        send_body: SendBody
        if not plan.uses_file:
            self._write(plan.wire(request.version))
            self._finish(request, plan.status, plan.body_length, "inline", plan.close)
            return
        head = plan.head(request.version)
        if file is None:
            # An archive: its members are opened by the sender, one window at a time.
            send_body, via = shared.send_body, shared.send_path
        elif plan.body_length <= shared.inline_max:
            try:
                buf = render_inline(head, plan, file.fd)
            except OSError as exc:
                buf = None
                log.debug("inline read failed, going async: %s", exc)
            if buf is not None:
                file.close()
                self._write(buf)
                self._finish(request, plan.status, plan.body_length, "inline", plan.close)
                return
            send_body, via = send_buffered, "buffered"
        else:
            send_body, via = shared.send_body, shared.send_path
        config = shared.config
        pacer = (
            Pacer(self.loop, config.limit_rate, config.limit_rate_after)
            if config.limit_rate
            else None
        )
        tally = self.tally = Tally(via)
        assert conn.channel is not None
        sending = send_body(conn.channel, head, plan, file.fd if file else None, pacer, tally)
        if conn.tls:
            sending = _flushed(sending, conn.channel)
        self._start(sending, lambda task: self._sent(task, request, plan, tally), file)

    def _start(
        self,
        coro: Coroutine[Any, Any, T],
        done: Callable[[asyncio.Task[T]], None],
        file: OpenFile | None,
    ) -> None:
        """Run a planning or sending task that owns ``file`` until ``done`` runs."""
        self.conn.move(Phase.SENDING)
        self.conn.pause_reading_for_send()
        self.conn.watch_send()
        self._owned = file
        self._cancel_outcome = CLIENT_ABORTED
        self._cancelled = False
        self.task = task = self.loop.create_task(coro)
        task.add_done_callback(done)

    def _end_task(self) -> OpenFile | None:
        self.task = self.tally = None
        held, self._owned = self._owned, None
        return held

    def _after_cancel(self) -> None:
        if self._abort_after_task:
            self.conn.abort_transport()  # see HttpProtocol.abort: the task has unwound now

    def _sent(
        self, task: asyncio.Task[Tally], request: Request, plan: ResponsePlan, tally: Tally
    ) -> None:
        """A send task ended, however: close its file, record the response, carry on."""
        held = self._end_task()
        if held is not None:
            held.close()
        if task.cancelled():
            self._record(request, plan.status, tally, self._cancel_outcome)
            self._after_cancel()
            return
        exc = task.exception()
        conn = self.conn
        if exc is None:
            if conn.phase is not Phase.SENDING:  # aborted as the last byte went
                self._record(request, plan.status, tally, COMPLETE)
                self._after_cancel()
                return
            conn.move(Phase.IDLE)
            self._finish(request, plan.status, tally.sent, tally.via, plan.close)
            if conn.phase is Phase.IDLE:
                self.run()
            return
        self._record(request, plan.status, tally, _failure(exc, conn, tally))
        conn.abort()

    def _record(self, request: Request, status: int, tally: Tally, outcome: str) -> None:
        self._record_response(self.conn.peer, request, status, tally.sent, tally.via, outcome)

    def _finish(self, request: Request, status: int, sent: int, via: str, close: bool) -> None:
        """A response was handed over whole: record it; close if it was the last."""
        self._record_response(self.conn.peer, request, status, sent, via, COMPLETE)
        if close or self.shared.shutting_down:
            self.conn.close_gracefully()

    def refuse(self, status: int, request: Request | None, extra: Fields = ()) -> None:
        """Answer ``status`` to what could not be read as a request, then close."""
        # A refused HEAD (its method was read) gets no body (RFC 9110 §9.3.2).
        plan = plan_error(status, request, close=True, extra=extra)
        conn = self.conn
        if not conn.transport_closing():
            self._write(plan.wire())
        # One access-log line per response, refused ones too; the request line is "-":
        # what could not be parsed is not echoed.
        refused = request if request is not None else Request()
        refused.method = ""
        refused.started = 0.0
        self._record_response(conn.peer, refused, status, plan.body_length, "inline", COMPLETE)
        conn.close_gracefully()


async def _plan_later(request: Request, deferred: Deferred) -> Planned:
    """A deferred plan (listing, digest); a 500 if planning fails."""
    try:
        return await deferred.run()
    except Exception:
        log.exception("failed to plan a response")
        return plan_error(500, request, close=True), None


async def _flushed(sending: Coroutine[Any, Any, Tally], channel: TransportChannel) -> Tally:
    """TLS: a body is complete once the TLS transport has handed it to the kernel. An EOF
    from the client makes that transport drop what it still holds (see
    HttpProtocol.eof_received): the wait then fails, and the cut is recorded."""
    tally = await sending
    await channel.drained()
    return tally


def _failure(exc: BaseException, conn: HttpProtocol, tally: Tally) -> str:
    """How a send that raised ended: the client left, or we failed (logged)."""
    if isinstance(exc, (SendAborted, ConnectionError)):
        log.debug("response to %s aborted after %d bytes: %s", conn.peer, tally.sent, exc)
        gone = isinstance(exc, (ClientGone, ConnectionError)) or conn.transport_closing()
        return CLIENT_ABORTED if gone else SERVER_ERROR
    log.error("sending a response failed", exc_info=exc)
    return SERVER_ERROR
