"""The HTTP/1.1 connection: one response lifecycle, from a complete request to its record.

Rules of this file:

* Responses go out strictly in request order. A request that arrives while a response is
  being sent waits in ``pipeline`` and reading is paused, so a client cannot make us
  buffer requests without bound (at most what one read already delivered is queued).
* The response side of the connection is in one of the phases below; ``_PHASE_MOVES`` is
  the complete list of allowed moves and ``_move`` refuses any other.
* Every response has one path through here: ``_respond`` answers from the cache or plans;
  ``_deliver`` writes it inline or starts a send task; ``_finish`` records it (the one
  ``Observer.record`` call for a response that was sent whole) and closes if it must.
  A send task's end, however it came (done, failed, cancelled before or after its first
  step), is handled in one done-callback, ``_sent``, which closes its file and records.
* The connection's one deadline is in ``deadlines.py``; parsing is in ``reader.py``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..files.lookup import OpenFile
from ..http.forwarded import UNIX_PEER
from ..http.head import DATE_CLOCK, connection_kind
from ..http.plan import ResponsePlan, plan_error
from ..http.request import Request
from ..observe.record import CLIENT_ABORTED, COMPLETE, SERVER_ERROR, TIMED_OUT
from ..respond.handler import RETRY_AFTER, Deferred, Planned
from ..send import Pacer, SendAborted, SendBody, Tally
from ..send.buffered import send_buffered
from ..send.inline import render_inline
from .channel import TransportChannel
from .deadlines import Action, Deadline, Watch, expired
from .reader import RequestReader
from .shared import Shared

log = logging.getLogger("zerocopy.protocol")
T = TypeVar("T")

# Requests queued beyond this many (pipelined in one read) pause reading until answered.
MAX_QUEUED = 32
# After an error response, how long to keep reading (and discarding) so that closing
# with unread data does not send an RST that destroys the response in flight.
LINGER_SECONDS = 2.0


class Phase(enum.Enum):
    IDLE = "idle"  # no response in progress; may be reading a request
    SENDING = "sending"  # a response is being planned or sent by a task
    CLOSING = "closing"  # no further requests will be answered
    CLOSED = "closed"


_PHASE_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset({Phase.SENDING, Phase.CLOSING, Phase.CLOSED}),
    Phase.SENDING: frozenset({Phase.IDLE, Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class IllegalPhaseMove(RuntimeError):
    pass


class Refusal:
    """A queued error response that ends the connection, answered in request order."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        self.reader = RequestReader(
            self._enqueue, self.loop.time if shared.observer.timed else None
        )
        self.deadline = Deadline(self.loop, self._on_deadline)
        self.channel: TransportChannel | None = None
        self.peer = "-"
        self.phase = Phase.IDLE
        self.pipeline: deque[Request | Refusal] = deque()
        self.no_more_requests = False  # stop parsing: Connection: close, error, upgrade, EOF
        self.reading_paused = False
        self._scheduled: asyncio.Handle | None = None
        self._task: asyncio.Task | None = None  # planning or sending a response
        self._cancel_outcome = CLIENT_ABORTED  # how a cancelled send task is recorded
        self._abort_after_task = False
        self._progress_mark: tuple[int, int, int] = (0, 0, 0)
        self._tally: Tally | None = None  # the body in flight
        self._owned: OpenFile | None = None  # the file of the task in flight

    def _move(self, phase: Phase) -> None:
        if phase is not self.phase:
            if phase not in _PHASE_MOVES[self.phase]:
                raise IllegalPhaseMove(f"{self.phase.value} -> {phase.value}")
            self.phase = phase

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        channel = self.channel = TransportChannel(self.loop, transport)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Responses are written whole; Nagle would only delay their last segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = self.reader.peer = str(peer[0])
        elif channel.sock_family == socket.AF_UNIX:
            self.peer = self.reader.peer = UNIX_PEER
        shared = self.shared
        if len(shared.connections) >= shared.config.max_connections:
            # Over the limit: answer at once and close, so the listener never spins on a
            # connection it cannot serve (RFC 9110 §15.6.4: 503 with Retry-After).
            self.no_more_requests = True
            plan = plan_error(503, None, close=True, extra=RETRY_AFTER)
            channel.write(plan.head() + b"".join(plan.segments))  # type: ignore[arg-type]
            self._close_gracefully()
            shared.rejected_connections += 1
            return
        shared.connections.add(self)
        shared.stats.connections_total += 1
        # The first request's head must arrive within --header-timeout of the connect.
        self.deadline.set(Watch.HEAD, shared.config.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._move(Phase.CLOSED)
        self.shared.connections.discard(self)
        if self._task is not None:
            self._task.cancel()  # its done-callback closes its file and records it
        if self.channel is not None:
            self.channel.connection_lost()
        self.deadline.cancel()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.pipeline.clear()

    def data_received(self, data: bytes) -> None:
        if self.no_more_requests:
            return  # lingering after an error, or after the last request: discard
        refusal = self.reader.feed(data)
        if refusal is not None:
            if refusal < 0:  # an upgrade: answer what was asked, then close
                self.no_more_requests = True
                self._close_if_done()
            elif not self.no_more_requests:  # else: bytes after "Connection: close"
                self.no_more_requests = True
                self.pipeline.append(Refusal(refusal))
                self._schedule()
            return
        if self.reader.request is not None:
            # A head is unfinished: --header-timeout runs from (about) its first byte, the
            # read it began in, and later bytes do not extend it.
            if self.deadline.watch is not Watch.HEAD:
                self.deadline.set(Watch.HEAD, self.shared.config.header_timeout)
        elif self.deadline.watch is Watch.HEAD:
            self._watch_send()
        # Complete requests while IDLE keep the idle deadline until they are answered
        # (one loop iteration later): one deadline update per request, not three.

    def eof_received(self) -> bool | None:
        self.no_more_requests = True
        if self.phase is Phase.SENDING or self.pipeline or self._scheduled is not None:
            return True  # half-closed client: finish what it asked for, then close
        return None  # close now

    def pause_writing(self) -> None:
        assert self.channel is not None
        self.channel.pause()

    def resume_writing(self) -> None:
        assert self.channel is not None
        self.channel.resume()
        if self.phase is Phase.IDLE and self.pipeline:
            self._run_pipeline()

    # --- the pipeline -------------------------------------------------------------------

    def _closing(self) -> bool:
        return self.phase is Phase.CLOSING or self.phase is Phase.CLOSED

    def _enqueue(self, request: Request) -> None:
        """Queue a complete request; answered from the next loop iteration, in order."""
        if self._closing():
            return  # pipelined behind a response that closes the connection
        if not request.keep_alive:
            self.no_more_requests = True
        self.pipeline.append(request)
        self._schedule()

    def _schedule(self) -> None:
        """Answer the queue from the next loop iteration.

        Answering from call_soon instead of inside data_received batches the reads of
        every ready connection before their writes: +30 % req/s on 4 KiB files under
        wrk -c50 (measured, see README), at a loop iteration of latency.
        """
        if len(self.pipeline) > MAX_QUEUED or self.phase is not Phase.IDLE:
            self._pause_reading()
        channel = self.channel
        if (
            self._scheduled is None
            and self.phase is Phase.IDLE
            and channel is not None
            and not channel.write_paused
        ):
            self._scheduled = self.loop.call_soon(self._run_scheduled)

    def _run_scheduled(self) -> None:
        self._scheduled = None
        self._run_pipeline()

    def _run_pipeline(self) -> None:
        """Answer queued requests until one needs a task, writing pauses, or none is left."""
        channel = self.channel
        assert channel is not None
        while self.pipeline and self.phase is Phase.IDLE and not channel.write_paused:
            item = self.pipeline.popleft()
            if isinstance(item, Refusal):
                self.pipeline.clear()
                self._refuse(item.status, self.reader.request)
                return
            self._respond(item)
        self._close_if_done()
        if self.phase is Phase.IDLE and not self.pipeline and not self.no_more_requests:
            self._resume_reading()
            if self.reader.request is None:
                self.deadline.set(Watch.IDLE, self.shared.config.keepalive_timeout)

    def _close_if_done(self) -> None:
        if (
            self.no_more_requests
            and self.phase is Phase.IDLE
            and not self.pipeline
            and self.reader.request is None
        ):
            self._close_gracefully()

    # --- one response -------------------------------------------------------------------

    def _respond(self, request: Request) -> None:
        shared = self.shared
        close = not request.keep_alive or shared.shutting_down
        cached = shared.handler.respond_cached(request)
        if cached is not None:
            channel = self.channel
            assert channel is not None
            tail = DATE_CLOCK.tail(connection_kind(close, request.version))
            if request.method == "HEAD":
                channel.write(cached.head + tail)
                self._finish(request, 200, 0, "cache", close)
            else:
                body = cached.body
                channel.write(b"".join((cached.head, tail, body)))
                self._finish(request, 200, len(body), "cache", close)
            return
        try:
            planned = shared.handler.plan(request, close)
        except Exception:
            log.exception("failed to plan a response")
            planned = plan_error(500, request, close=True), None
        if isinstance(planned, Deferred):
            # A directory scan or a digest to wait for: off the loop, in request order.
            planning = self._plan_later(request, planned)
            self._start(planning, lambda task: self._planned(task, request), planned.file)
            return
        self._deliver(request, *planned)

    async def _plan_later(self, request: Request, deferred: Deferred) -> Planned:
        try:
            return await deferred.run()
        except Exception:
            log.exception("failed to plan a response")
            return plan_error(500, request, close=True), None

    def _planned(self, task: asyncio.Task[Planned], request: Request) -> None:
        """A planning task ended: deliver its plan, or (cancelled) close what it held."""
        self._task = None
        held, self._owned = self._owned, None
        if task.cancelled():
            # No status was decided, so there is no response to record.
            if held is not None:
                held.close()
            if self._abort_after_task and self.channel is not None:
                self.channel.transport.abort()
            return
        plan, file = task.result()
        if held is not None and held is not file:
            held.close()
        if self.phase is not Phase.SENDING:  # aborted meanwhile
            if file is not None:
                file.close()
            return
        self._move(Phase.IDLE)
        self._deliver(request, plan, file)
        if self.phase is Phase.IDLE:
            self._run_pipeline()

    def _deliver(self, request: Request, plan: ResponsePlan, file: OpenFile | None) -> None:
        """Send a plan: in one write when its body is small (or absent), else by a task."""
        shared = self.shared
        channel = self.channel
        assert channel is not None
        head = plan.head(request.version)
        send_body: SendBody
        if file is None:
            channel.write(head + b"".join(plan.segments))  # type: ignore[arg-type]
            self._finish(request, plan.status, plan.body_length, "inline", plan.close)
            return
        if plan.body_length <= shared.inline_max:
            try:
                buf = render_inline(head, plan, file.fd)
            except OSError as exc:
                buf = None
                log.debug("inline read failed, going async: %s", exc)
            if buf is not None:
                file.close()
                channel.write(buf)
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
        tally = self._tally = Tally(via)
        sending = send_body(channel, head, plan, file.fd, pacer, tally)
        self._start(sending, lambda task: self._sent(task, request, plan, tally), file)

    def _start(
        self,
        coro: Coroutine[Any, Any, T],
        done: Callable[[asyncio.Task[T]], None],
        file: OpenFile | None,
    ) -> None:
        """Run a planning or sending task that owns ``file`` until ``done`` runs."""
        self._move(Phase.SENDING)
        self._pause_reading()
        self._watch_send()
        self._owned = file
        self._cancel_outcome = CLIENT_ABORTED
        self._task = task = self.loop.create_task(coro)
        task.add_done_callback(done)

    def _sent(
        self, task: asyncio.Task[Tally], request: Request, plan: ResponsePlan, tally: Tally
    ) -> None:
        """A send task ended, however: close its file, record the response, carry on."""
        self._task = self._tally = None
        held, self._owned = self._owned, None
        if held is not None:
            held.close()
        if task.cancelled():
            self._record(request, plan.status, tally, self._cancel_outcome)
            if self._abort_after_task and self.channel is not None:
                self.channel.transport.abort()  # see abort(): the sender has unwound now
            return
        exc = task.exception()
        if exc is None:
            if self.phase is not Phase.SENDING:
                self._record(request, plan.status, tally, COMPLETE)
                return
            self._move(Phase.IDLE)
            self._finish(request, plan.status, tally.sent, tally.via, plan.close)
            if self.phase is Phase.IDLE:
                self._run_pipeline()
            return
        if isinstance(exc, (SendAborted, ConnectionError)):
            channel = self.channel
            gone = isinstance(exc, ConnectionError) or channel is None or channel.is_closing()
            log.debug("response to %s aborted after %d bytes: %s", self.peer, tally.sent, exc)
            self._record(request, plan.status, tally, CLIENT_ABORTED if gone else SERVER_ERROR)
        else:
            log.error("sending a response failed", exc_info=exc)
            self._record(request, plan.status, tally, SERVER_ERROR)
        self.abort()

    def _record(self, request: Request, status: int, tally: Tally, outcome: str) -> None:
        self.shared.observer.record(self.peer, request, status, tally.sent, tally.via, outcome)

    def _finish(self, request: Request, status: int, sent: int, via: str, close: bool) -> None:
        """A response was handed over whole: record it; close if it was the last."""
        self.shared.observer.record(self.peer, request, status, sent, via, COMPLETE)
        if close or self.shared.shutting_down:
            self._close_gracefully()

    def _refuse(self, status: int, request: Request | None) -> None:
        """Answer ``status`` to what could not be read as a request, then close."""
        plan = plan_error(status, None, close=True)
        channel = self.channel
        if channel is not None and not channel.is_closing():
            channel.write(plan.head() + b"".join(plan.segments))  # type: ignore[arg-type]
        # One access-log line per response, refused ones too; the request line is "-":
        # what could not be parsed is not echoed.
        refused = request if request is not None else Request()
        refused.method = ""
        refused.started = 0.0
        sent = plan.body_length
        self.shared.observer.record(self.peer, refused, status, sent, "inline", COMPLETE)
        self._close_gracefully()

    # --- the deadline -------------------------------------------------------------------

    def _on_deadline(self, watch: Watch) -> None:
        if self.phase is Phase.CLOSED:
            return
        channel = self.channel
        assert channel is not None
        config = self.shared.config
        progressed = False
        buffered = bool(channel.transport.get_write_buffer_size())
        if watch is Watch.SEND:
            tally = self._tally
            mark = channel.progress(tally.sent if tally is not None else 0)
            progressed = mark != self._progress_mark
            self._progress_mark = mark
        action = expired(
            watch,
            idle=self.phase is Phase.IDLE,
            sending=self.phase is Phase.SENDING,
            queued=bool(self.pipeline) or self._scheduled is not None,
            buffered=buffered,
            progressed=progressed,
        )
        if action is Action.REFUSE_408:
            log.debug("request head from %s not complete in %ss", self.peer, config.header_timeout)
            self.no_more_requests = True
            self.reader.abandon()
            self._refuse(408, None)
        elif action is Action.ABORT:
            if watch is Watch.HEAD:
                self.reader.abandon()
            else:
                log.debug(
                    "no progress sending to %s in %ss: aborting", self.peer, config.send_timeout
                )
            self.no_more_requests = True
            self.abort(TIMED_OUT)
        elif action is Action.WATCH_SEND:
            if watch is Watch.SEND:
                self.deadline.set(Watch.SEND, config.send_timeout)  # progress: the mark stays
            else:
                self._watch_send()
        elif action is Action.WATCH_IDLE:
            self.deadline.set(Watch.IDLE, config.keepalive_timeout)
        elif action is Action.CLOSE_IDLE:
            self.close_if_idle()
        else:
            channel.transport.close()

    def _watch_send(self) -> None:
        """Start watching a send: its first look at the progress always counts as progress."""
        self._progress_mark = (-1, -1, -1)
        self.deadline.set(Watch.SEND, self.shared.config.send_timeout)

    # --- reading and closing -------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.channel is not None:
            self.reading_paused = True
            self.channel.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.channel is not None and self.phase is not Phase.CLOSED:
            self.reading_paused = False
            self.channel.transport.resume_reading()

    def _close_gracefully(self) -> None:
        """Send what is queued, then FIN; keep reading briefly so no RST destroys it."""
        if self._closing():
            return
        self._move(Phase.CLOSING)
        self.no_more_requests = True
        self.pipeline.clear()
        channel = self.channel
        if channel is None or channel.is_closing():
            return
        transport = channel.transport
        if transport.can_write_eof():
            transport.write_eof()
            self.reading_paused = True  # force the resume below
            self._resume_reading()
            self.deadline.set(Watch.LINGER, LINGER_SECONDS)
        else:
            transport.close()

    def close_if_idle(self) -> None:
        """Close the connection if it waits for its next request (keep-alive, shutdown)."""
        if (
            self.phase is Phase.IDLE
            and not self.pipeline
            and self.reader.request is None
            and self.channel is not None
        ):
            self._move(Phase.CLOSING)
            self.no_more_requests = True
            self.channel.transport.close()

    def abort(self, outcome: str | None = None) -> None:
        """Drop the connection now: the response framing can no longer be honoured."""
        if self.phase is Phase.CLOSED:
            return
        self._move(Phase.CLOSING)
        self.no_more_requests = True
        self.pipeline.clear()
        if outcome is not None:
            self._cancel_outcome = outcome
        task = self._task
        if task is not None and not task.done():
            # Let the task unwind first, then abort the transport (in its done-callback).
            # Aborting a stdlib transport while its loop.sendfile runs trips an asyncio bug
            # (3.11: InvalidStateError in _call_connection_lost, the empty-waiter is still
            # set), after which the loop's registration of the reused fd is wrong and the
            # next connection is never read.
            self._abort_after_task = True
            task.cancel()
            return
        if self.channel is not None:
            self.channel.transport.abort()
