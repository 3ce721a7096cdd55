"""The HTTP/1.1 connection: httptools parsing, pipelining, and handing plans to senders.

Rules of this file:

* Parser callbacks are tiny accumulators into a ``Request``; limits are enforced there by
  raising ``_Reject``, which ends parsing of the connection.
* Responses go out strictly in request order. A request that arrives while a response is
  being sent waits in ``pipeline`` and reading is paused, so a client cannot make us
  buffer requests without bound (at most what one read already delivered is queued).
* The response side of the connection is in one of the phases below; ``_PHASE_MOVES`` is
  the complete list of allowed moves and ``_move`` refuses any other.
* Only a body larger than the inline limit (or one that must wait for the disk) runs as a
  task; everything else is answered synchronously inside ``data_received``.
"""

from __future__ import annotations

import asyncio
import enum
import fcntl
import logging
import os
import socket
import struct
import termios
from collections import deque
from typing import TYPE_CHECKING

import httptools

from .forwarded import UNIX_PEER, client_view
from .handler import Deferred
from .plan import ResponsePlan, plan_error
from .request import KEPT_FIELDS, Request
from .send import Pacer, SendAborted, render_inline, send_buffered

if TYPE_CHECKING:
    from .app import ServerState

log = logging.getLogger("zerocopy.protocol")

# RFC 9112 §3 leaves limits to the server; these are the contract. Exceeding one
# answers the named status and closes the connection.
MAX_TARGET_BYTES = 8 * 1024  # -> 414
MAX_HEADER_BYTES = 16 * 1024  # -> 431 (sum of field lines)
MAX_HEADER_FIELDS = 100  # -> 431
# A head still incomplete after this many bytes is refused even if no single callback
# fired yet (httptools buffers a field line until it ends).
MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024  # -> 431
# A request body (GET with Content-Length) is read and discarded up to this size.
MAX_DISCARDED_BODY = 64 * 1024  # -> 413
# Requests queued beyond this many (pipelined in one read) pause reading until answered.
MAX_QUEUED = 32
# After an error response, how long to keep reading (and discarding) so that closing
# with unread data does not send an RST that destroys the response in flight.
LINGER_SECONDS = 2.0


class Phase(enum.Enum):
    IDLE = "idle"  # no response in progress; may be reading a request
    SENDING = "sending"  # a response body is being sent by a task
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


class Watch(enum.Enum):
    """What the connection's one deadline guards (see ``_on_deadline``)."""

    IDLE = "idle"  # waiting for a request: --keepalive-timeout (--header-timeout at first)
    HEAD = "head"  # a request has begun: --header-timeout from its first byte, never reset
    SEND = "send"  # responses owed or bytes in flight: --send-timeout without progress
    LINGER = "linger"  # closing: drain the peer briefly, then close


def _unsent_bytes(fd: int) -> int:
    """Bytes still in the kernel's send queue of a socket (SIOCOUTQ), or -1."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return -1


class _Reject(Exception):
    """Raised in a parser callback: answer ``status`` and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Rejection:
    """A queued error response that ends the connection, answered in request order."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status


_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _invalid_method_status(data: bytes, completed_before: int) -> int:
    """501 for a well-formed method we do not know (RFC 9110 §9.1), 400 for garbage (a TLS
    ClientHello sent to the plain port, binary noise).

    The failing request starts after the heads of the ``completed_before`` requests this
    chunk finished first (pipelined GETs carry no bodies), or earlier than the chunk, in
    which case the chunk continues its method token.
    """
    start = 0
    for _ in range(completed_before):
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            break
        start = end + 4
    token = data[start:].lstrip(b"\r\n").partition(b" ")[0]
    return 501 if 0 < len(token) <= 32 and _TCHAR.issuperset(token) else 400


def _loggable(target: bytes) -> str:
    return target[:200].decode("latin-1").encode("unicode_escape").decode("ascii")


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = state.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sock_fd = -1
        self.sock_family = socket.AF_INET
        self.peer = "-"
        self.phase = Phase.IDLE
        self.request: Request | None = None
        self.pipeline: deque[Request | _Rejection] = deque()
        self.no_more_requests = False  # stop parsing: Connection: close, error, upgrade, EOF
        self.reading_paused = False
        self.write_paused = False
        self.head_bytes = 0  # bytes of the unfinished head received so far
        self.in_head = False
        self.message_begins = 0
        self.message_completes = 0
        self.response_sent = 0  # body bytes of the response in flight
        self.pacer: Pacer | None = None  # --limit-rate for the response in flight
        self.response_path = ""
        self._task: asyncio.Task[None] | None = None
        self._task_started = False
        self._abort_after_task = False
        self._body_fd = -1  # the file a body task sends from, until the task closes it
        self._writable_waiter: asyncio.Future[None] | None = None
        self._scheduled: asyncio.Handle | None = None
        self.bytes_out = 0  # bytes handed to the transport or the kernel, all responses
        # One lazily re-armed timer: setting a deadline is a float store; the timer, when it
        # fires early, re-arms itself for the deadline it finds. See _on_deadline.
        self._watch = Watch.IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._progress_mark: tuple[int, int, int] = (0, 0, 0)

    # --- phases -----------------------------------------------------------------------

    def _move(self, phase: Phase) -> None:
        if phase is not self.phase:
            if phase not in _PHASE_MOVES[self.phase]:
                raise IllegalPhaseMove(f"{self.phase.value} -> {phase.value}")
            self.phase = phase

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.sock_fd = sock.fileno()
            self.sock_family = sock.family
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Responses are written whole; Nagle would only delay their last segment.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        elif self.sock_family == socket.AF_UNIX:
            self.peer = UNIX_PEER
        state = self.state
        if len(state.connections) >= state.config.max_connections:
            # Over the limit: answer at once and close, so the listener never spins on a
            # connection it cannot serve (RFC 9110 §15.6.4: 503 with Retry-After).
            self.no_more_requests = True
            plan = plan_error(503, None, close=True, extra="Retry-After: 1\r\n")
            transport.write(plan.head + b"".join(plan.segments))  # type: ignore[attr-defined]
            self._close_gracefully()
            state.rejected_connections += 1
            return
        state.connections.add(self)
        state.stats.connections_total += 1
        # The first request's head must arrive within --header-timeout of the connect.
        self._set_deadline(Watch.HEAD, state.config.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED  # from any phase: the peer decides this one
        self.state.connections.discard(self)
        if self._task is not None:
            self._task.cancel()
            if self._body_fd >= 0 and not self._task_started:
                # Cancelled before its first step, the task never enters the try/finally
                # that owns the file: close it here, or it leaks (found by 10,000 aborts).
                os.close(self._body_fd)
                self._body_fd = -1
        self._wake_writer(ConnectionResetError("connection lost"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.pipeline.clear()

    def data_received(self, data: bytes) -> None:
        if self.no_more_requests:
            return  # lingering after an error, or after the last request: discard
        begins = self.message_begins
        completes = self.message_completes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request is complete and answered; what follows is another protocol we
            # do not speak. Finish the queued responses, then close.
            self.no_more_requests = True
            self._close_if_done()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status)
            else:
                log.error("parser callback failed", exc_info=cause)
                self._reject(500)
        except httptools.HttpParserInvalidMethodError:
            completed = self.message_completes - completes
            self._reject(_invalid_method_status(data, completed))
        except httptools.HttpParserError as exc:
            if self.no_more_requests:
                return  # bytes after a "Connection: close" request: ignored
            log.debug("bad request from %s: %s", self.peer, exc)
            self._reject(400)
        else:
            if self.in_head:
                self._count_head_bytes(data, began_here=self.message_begins != begins)
            if self.request is not None:
                # A head is unfinished: --header-timeout runs from (about) its first byte,
                # the read it began in, and later bytes do not extend it: a slowloris
                # client gains nothing by trickling.
                if self._watch is not Watch.HEAD:
                    self._set_deadline(Watch.HEAD, self.state.config.header_timeout)
            elif self._watch is Watch.HEAD:
                self._set_deadline(Watch.SEND, self.state.config.send_timeout)
            # Complete requests while IDLE keep the idle deadline until they are answered
            # (one loop iteration later): one deadline update per request, not three.

    def _count_head_bytes(self, data: bytes, began_here: bool) -> None:
        """Bound a head that has not ended yet, whatever pace its bytes arrive at.

        httptools holds an unfinished field line without telling us, so we count bytes.
        When the head began in this chunk, it began after the chunk's last CRLFCRLF (an
        unfinished head contains none): exact for pipelined GETs, an upper bound else.
        """
        if began_here:
            end_of_previous = data.rfind(b"\r\n\r\n")
            self.head_bytes = len(data) - (end_of_previous + 4 if end_of_previous >= 0 else 0)
        else:
            self.head_bytes += len(data)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._reject(431)

    def eof_received(self) -> bool | None:
        self.no_more_requests = True
        if self.phase is Phase.SENDING or self.pipeline or self._scheduled is not None:
            return True  # half-closed client: finish what it asked for, then close
        return None  # close now

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer(None)
        if self.phase is Phase.IDLE and self.pipeline:
            self._run_pipeline()

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = Request()
        self.in_head = True
        self.message_begins += 1

    def on_url(self, url: bytes) -> None:
        request = self.request
        assert request is not None
        request.target += url
        if len(request.target) > MAX_TARGET_BYTES:
            raise _Reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        assert request is not None
        request.header_count += 1
        request.header_bytes += len(name) + len(value) + 4
        if request.header_count > MAX_HEADER_FIELDS or request.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431)
        lname = name.lower()
        attr = KEPT_FIELDS.get(lname)
        if attr is not None:
            text = value.decode("latin-1")
            old = getattr(request, attr)
            if old is None:
                setattr(request, attr, text)
            elif attr == "host":
                raise _Reject(400)  # RFC 9112 §3.2: more than one Host is a 400
            else:
                setattr(request, attr, f"{old}, {text}")
        elif lname == b"content-length":
            if not value.isdigit():
                raise _Reject(400)
            digits = value.lstrip(b"0")
            # Compare by length first: Python refuses int() of more than 4300 digits, and
            # llhttp lets any number of leading zeros through.
            if len(digits) > 9 or int(digits or b"0") > MAX_DISCARDED_BODY:
                raise _Reject(413)

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        self.in_head = False
        parser = self.parser
        request.method = parser.get_method().decode("ascii", "replace")
        request.version = parser.get_http_version()
        if request.version != "1.1" and request.version != "1.0":
            raise _Reject(505)
        if request.host is None and request.version == "1.1":
            raise _Reject(400)  # RFC 9112 §3.2: HTTP/1.1 without Host

    def on_body(self, body: bytes) -> None:
        request = self.request
        assert request is not None
        request.body_bytes += len(body)
        if request.body_bytes > MAX_DISCARDED_BODY:
            raise _Reject(413)

    def on_message_complete(self) -> None:
        request = self.request
        assert request is not None
        self.request = None
        self.message_completes += 1
        if self.phase is Phase.CLOSING or self.phase is Phase.CLOSED:
            return  # pipelined behind a response that closes the connection
        request.keep_alive = self.parser.should_keep_alive()
        if self.state.timed:
            request.started = self.loop.time()
        if not request.keep_alive:
            self.no_more_requests = True
        self._enqueue(request)

    # --- responding ---------------------------------------------------------------------

    def _enqueue(self, item: Request | _Rejection) -> None:
        """Queue a request; it is answered from the next loop iteration, in order.

        Answering from call_soon instead of inside data_received batches the reads of
        every ready connection before their writes: +30 % req/s on 4 KiB files under
        wrk -c50 (measured, see README), at a loop iteration of latency.
        """
        self.pipeline.append(item)
        if len(self.pipeline) > MAX_QUEUED or self.phase is not Phase.IDLE:
            self._pause_reading()
        if self._scheduled is None and self.phase is Phase.IDLE and not self.write_paused:
            self._scheduled = self.loop.call_soon(self._run_scheduled)

    def _run_scheduled(self) -> None:
        self._scheduled = None
        self._run_pipeline()

    def _reject(self, status: int) -> None:
        """Answer ``status`` after the responses already owed, then close."""
        self.no_more_requests = True
        self.in_head = False
        self._enqueue(_Rejection(status))

    def _send_rejection(self, status: int) -> None:
        plan = plan_error(status, None, close=True)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(plan.head + b"".join(plan.segments))  # type: ignore[arg-type]
        # One access-log line per response, refused ones too; the request line is "-":
        # what could not be parsed is not echoed.
        refused = self.request if self.request is not None else Request()
        refused.method = ""
        if self.state.timed:
            self.state.stats.response("", status, 0.0)
        self._log_access(refused, status, plan.body_length)
        self._close_gracefully()

    def _run_pipeline(self) -> None:
        """Answer queued requests until one needs a task, writing pauses, or none is left."""
        while self.pipeline and self.phase is Phase.IDLE and not self.write_paused:
            item = self.pipeline.popleft()
            if isinstance(item, _Rejection):
                self.pipeline.clear()
                self._send_rejection(item.status)
                return
            self._respond(item)
        self._close_if_done()
        if self.phase is Phase.IDLE and not self.pipeline and not self.no_more_requests:
            self._resume_reading()
            if self.request is None:
                self._set_deadline(Watch.IDLE, self.state.config.keepalive_timeout)

    def _close_if_done(self) -> None:
        if (
            self.no_more_requests
            and self.phase is Phase.IDLE
            and not self.pipeline
            and self.request is None
        ):
            self._close_gracefully()

    def _respond(self, request: Request) -> None:
        close = not request.keep_alive or self.state.shutting_down
        state = self.state
        cached = state.handler.respond_cached(request, close)
        if cached is not None:
            data, body_length = cached
            self.transport.write(data)  # type: ignore[union-attr]
            self.bytes_out += len(data)
            self._finish_cached(request, body_length, close)
            return
        try:
            planned = state.handler.plan(request, close)
        except Exception:
            log.exception("failed to plan a response")
            planned = plan_error(500, request, close=True), None
        if isinstance(planned, Deferred):
            # A directory scan or a digest to wait for: off the loop, in request order.
            self._move(Phase.SENDING)
            self._pause_reading()
            self._set_deadline(Watch.SEND, state.config.send_timeout)
            self._task_started = False
            self._task = self.loop.create_task(self._plan_later(request, close, planned))
            return
        self._deliver(request, *planned)

    async def _plan_later(self, request: Request, close: bool, deferred: Deferred) -> None:
        self._task_started = True
        try:
            plan, fd = await deferred.run()
        except asyncio.CancelledError:
            if self._abort_after_task and self.transport is not None:
                self.transport.abort()
            return
        except Exception:
            log.exception("failed to plan a response")
            plan, fd = plan_error(500, request, close=True), None
        self._task = None
        if self.phase is not Phase.SENDING:  # lost meanwhile
            if fd is not None:
                os.close(fd)
            return
        self._move(Phase.IDLE)
        self._deliver(request, plan, fd)
        if self.phase is Phase.IDLE:
            self._run_pipeline()

    def _deliver(self, request: Request, plan: ResponsePlan, fd: int | None) -> None:
        """Send a plan: in one write when its body is small (or absent), else by a task."""
        state = self.state
        transport = self.transport
        assert transport is not None
        if fd is None:
            data = plan.head + b"".join(plan.segments)  # type: ignore[arg-type]
            transport.write(data)
            self.bytes_out += len(data)
            self._finish(request, plan, plan.body_length, "inline")
            return
        if plan.body_length <= state.inline_max:
            try:
                buf = render_inline(plan, fd)
            except OSError as exc:
                buf = None
                log.debug("inline read failed, going async: %s", exc)
            if buf is not None:
                os.close(fd)
                transport.write(buf)
                self.bytes_out += len(buf)
                self._finish(request, plan, plan.body_length, "inline")
                return
            sender, path = send_buffered, "buffered"
        else:
            sender, path = state.sender, state.sender_name
        self._move(Phase.SENDING)
        self._pause_reading()
        self._set_deadline(Watch.SEND, state.config.send_timeout)
        self.response_sent = 0
        self.response_path = path
        config = state.config
        self.pacer = (
            Pacer(self.loop, config.limit_rate, config.limit_rate_after)
            if config.limit_rate
            else None
        )
        self._body_fd = fd
        self._task_started = False
        self._task = self.loop.create_task(self._send_body(request, plan, fd, sender))

    async def _send_body(self, request: Request, plan: ResponsePlan, fd: int, sender) -> None:
        self._task_started = True
        try:
            try:
                await sender(self, plan, fd)
            finally:
                self._body_fd = -1
                os.close(fd)
        except asyncio.CancelledError:
            if self._abort_after_task and self.transport is not None:
                self.transport.abort()  # see abort(): the sender has unwound now
            return  # else the connection was lost; connection_lost did the rest
        except (SendAborted, ConnectionError) as exc:
            log.debug(
                "response to %s aborted after %d bytes: %s", self.peer, self.response_sent, exc
            )
            self._log_access(request, plan.status, self.response_sent)
            self._task = None
            self.abort()
            return
        except Exception:
            log.exception("sending a response failed")
            self._task = None
            self.abort()
            return
        self._task = None
        if self.phase is Phase.SENDING:
            self._move(Phase.IDLE)
            self._finish(request, plan, plan.body_length, self.response_path)
            if self.phase is Phase.IDLE:
                self._run_pipeline()

    def _finish_cached(self, request: Request, sent: int, close: bool) -> None:
        """_finish for a 200 answered from the file cache (no plan was made)."""
        state = self.state
        stats = state.stats
        stats.responses_by_path["cache"] += 1
        stats.bytes_by_path["cache"] += sent
        if state.timed:
            stats.response(request.method, 200, self.loop.time() - request.started)
        if state.debug:
            log.debug(
                "%s %s -> 200, %d body bytes via cache",
                request.method,
                _loggable(request.target),
                sent,
            )
        if state.access_log is not None:
            state.access_log.log(self._client(request), request, 200, sent)
        if close:
            self._close_gracefully()

    def _finish(self, request: Request, plan: ResponsePlan, sent: int, path: str) -> None:
        state = self.state
        stats = state.stats
        stats.responses_by_path[path] += 1
        if path == "inline":
            stats.bytes_by_path[path] += sent
        if state.timed:
            stats.response(request.method, plan.status, self.loop.time() - request.started)
        if state.debug:
            log.debug(
                "%s %s -> %d, %d body bytes via %s",
                request.method,
                _loggable(request.target),
                plan.status,
                sent,
                path,
            )
        self._log_access(request, plan.status, sent)
        if plan.close or state.shutting_down:
            self._close_gracefully()

    def _log_access(self, request: Request, status: int, sent: int) -> None:
        access_log = self.state.access_log
        if access_log is not None:
            access_log.log(self._client(request), request, status, sent)

    def _client(self, request: Request) -> str:
        """The client's address for the log: through trusted proxies, else the peer."""
        if request.forwarded is None and request.x_forwarded_for is None:
            return self.peer
        state = self.state
        return client_view(
            self.peer,
            state.trusted,
            state.scheme,
            request.forwarded,
            request.x_forwarded_for,
            request.x_forwarded_proto,
            request.x_forwarded_host,
        ).address

    # --- used by the senders ------------------------------------------------------------

    def count_bytes(self, path: str, n: int) -> None:
        self.response_sent += n
        self.bytes_out += n
        self.state.stats.bytes_by_path[path] += n

    def note_fallback(self) -> None:
        log.debug("sendfile unavailable for this file; falling back to buffered")
        self.response_path = "buffered-fallback"

    def wait_writable(self) -> asyncio.Future[None]:
        """A future done when the transport accepts writes again (resume_writing)."""
        fut = self.loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionResetError("connection lost"))
        elif not self.write_paused:
            fut.set_result(None)
        else:
            self._writable_waiter = fut
        return fut

    async def wait_drained(self) -> None:
        """Wait until the transport's buffer is empty (before writing around it)."""
        transport = self.transport
        assert transport is not None
        if not transport.get_write_buffer_size():
            return
        # With both limits at 0, pause_writing/resume_writing mean exactly "not empty" and
        # "empty"; setting them pauses us now if anything is queued.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            while transport.get_write_buffer_size():
                if self.closed:
                    raise ConnectionResetError("connection lost")
                if self.write_paused:
                    await self.wait_writable()
                else:
                    await asyncio.sleep(0)
        finally:
            if not self.closed:
                transport.set_write_buffer_limits()

    def _wake_writer(self, exc: Exception | None) -> None:
        fut = self._writable_waiter
        if fut is not None:
            self._writable_waiter = None
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    # --- the deadline ---------------------------------------------------------------------

    def _set_deadline(self, watch: Watch, seconds: float) -> None:
        self._watch = watch
        self._deadline = deadline = self.loop.time() + seconds
        if watch is Watch.SEND:
            # No syscall here (this runs per request): the kernel's queue is read only when
            # the timer fires, so a stall is caught between one and two timeouts.
            self._progress_mark = (self.bytes_out, -1, -1)
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_deadline)

    def _progress(self) -> tuple[int, int, int]:
        """What moves while a response makes progress: our bytes out, the transport's
        buffer, the kernel's send queue (a slow reader drains only the last two)."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.bytes_out, buffered, _unsent_bytes(self.sock_fd) if self.sock_fd >= 0 else 0

    def _on_deadline(self) -> None:
        self._timer = None
        if self.phase is Phase.CLOSED:
            return
        now = self.loop.time()
        if now < self._deadline:
            self._timer_at = self._deadline  # moved since armed: sleep until the new one
            self._timer = self.loop.call_at(self._deadline, self._on_deadline)
            return
        config = self.state.config
        watch = self._watch
        transport = self.transport
        assert transport is not None
        if watch is Watch.HEAD:
            log.debug("request head from %s not complete in %ss", self.peer, config.header_timeout)
            self.request = None
            self.in_head = False
            self.no_more_requests = True
            if self.phase is Phase.IDLE and not self.pipeline:
                self._send_rejection(408)
            else:
                self.abort()
        elif watch is Watch.IDLE and (
            self.pipeline or self._scheduled is not None or self.phase is Phase.SENDING
        ):
            # A request arrived just as the connection's idle time ran out: it is owed.
            self._set_deadline(Watch.SEND, config.send_timeout)
        elif watch is Watch.IDLE or watch is Watch.LINGER:
            if transport.get_write_buffer_size():
                # The last response is still queued for a client that reads slowly (or not
                # at all): judge it by progress, like any response in flight.
                self._set_deadline(Watch.SEND, config.send_timeout)
            elif watch is Watch.IDLE:
                self.close_idle()
            else:
                transport.close()
        else:  # Watch.SEND
            mark = self._progress()
            if not mark[1] and not self.pipeline and self.phase is not Phase.SENDING:
                # Everything was handed over: wait for the next request, or close.
                if self.phase is Phase.IDLE:
                    self._set_deadline(Watch.IDLE, config.keepalive_timeout)
                else:
                    transport.close()
            elif mark != self._progress_mark:
                self._set_deadline(Watch.SEND, config.send_timeout)
                self._progress_mark = mark
            else:
                log.debug(
                    "no progress sending to %s in %ss: aborting", self.peer, config.send_timeout
                )
                self.abort()

    # --- reading and closing -------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def _close_gracefully(self) -> None:
        """Send what is queued, then FIN; keep reading briefly so no RST destroys it."""
        if self.phase is Phase.CLOSING or self.phase is Phase.CLOSED:
            return
        self._move(Phase.CLOSING)
        self.no_more_requests = True
        self.pipeline.clear()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
            self.reading_paused = True  # force the resume below
            self._resume_reading()
            self._set_deadline(Watch.LINGER, LINGER_SECONDS)
        else:
            transport.close()

    def close_idle(self) -> None:
        """Close a connection that waits for its next request (shutdown)."""
        if self.phase is Phase.IDLE and self.transport is not None:
            self._move(Phase.CLOSING)
            self.no_more_requests = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now: the response framing can no longer be honoured."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase is not Phase.CLOSING:
            self._move(Phase.CLOSING)
        self.no_more_requests = True
        self.pipeline.clear()
        task = self._task
        if task is not None and not task.done() and self._task_started:
            # Let the sender unwind first. Aborting a stdlib transport while its
            # loop.sendfile runs trips an asyncio bug (3.11: InvalidStateError in
            # _call_connection_lost, the empty-waiter is still set), after which the loop's
            # registration of the reused fd is wrong and the next connection is never read.
            self._abort_after_task = True
            task.cancel()
            return
        if self.transport is not None:
            self.transport.abort()
