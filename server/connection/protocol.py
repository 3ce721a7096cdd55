"""The HTTP/1.1 connection: transport events, phases, the deadline, reading and closing.

Rules of this file:

* Parsing is ``reader.py``'s; answering, in request order, is ``responses.py``'s. This
  class owns what is the connection's: its phase (``phases.py``: every move checked), its
  one deadline (``deadlines.py``), pausing and resuming reading, and closing.
* Reading is paused while a response is sent by a task and while too many requests are
  queued, so a client cannot make us buffer requests without bound.
* A connection closes gracefully (FIN after what is queued, then a brief linger that
  reads and discards, so no RST destroys the response in flight), or is aborted when the
  response framing can no longer be honoured.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from ..http.forwarded import UNIX_PEER
from ..http.plan import plan_error
from ..http.request import Request
from ..observe.record import CLIENT_ABORTED, COMPLETE, SERVER_ERROR, TIMED_OUT
from ..respond.handler import RETRY_AFTER
from .channel import TransportChannel
from .deadlines import Action, Deadline, Watch, expired
from .phases import Phase, checked_move
from .reader import RequestReader
from .responses import Refusal, Responder
from .shared import Shared

log = logging.getLogger("zerocopy.protocol")

# After the last response, how long to keep reading (and discarding) so that closing
# with unread data does not send an RST that destroys the response in flight.
LINGER_SECONDS = 2.0


# A download mirror holds many idle keep-alive connections: no __dict__ per one.
_CONNECTION_SLOTS = (
    "_head_due",
    "_progress_mark",
    "channel",
    "client",
    "deadline",
    "loop",
    "no_more_requests",
    "peer",
    "phase",
    "reader",
    "reading_paused",
    "responder",
    "shared",
    "tls",
)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    __slots__ = _CONNECTION_SLOTS

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        clock = self.loop.time if shared.observer.timed else None
        self.responder = Responder(self)
        self.reader = RequestReader(self.responder.enqueue_request, clock)
        self.deadline = Deadline(self.loop, self._on_deadline)
        self.channel: TransportChannel | None = None
        self.peer = "-"
        self.phase = Phase.IDLE
        self.no_more_requests = False  # stop parsing: Connection: close, error, upgrade, EOF
        self.reading_paused = False
        self._progress_mark: tuple[int, int, int] = (0, 0, 0)
        self._head_due = 0.0  # when the unfinished head's --header-timeout runs out
        self.client: str | None = None  # the key --max-connections-per-ip counts it under
        self.tls = False  # a TLS transport (connection/tls.py): see pause_reading_for_send

    def move(self, phase: Phase) -> None:
        self.phase = checked_move(self.phase, phase)

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but have its methods.
        channel = self.channel = TransportChannel(self.loop, cast(asyncio.Transport, transport))
        self.responder.attach(channel)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Responses are written whole; Nagle would only delay their last segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = transport.get_extra_info("ssl_object") is not None
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = self.reader.peer = str(peer[0])
        elif channel.sock_family == socket.AF_UNIX:
            self.peer = self.reader.peer = UNIX_PEER
        shared = self.shared
        shared.handshakes.pop(self, None)  # TLS: the handshake is over
        if shared.open_connections() >= shared.config.max_connections:
            # Over the limit: answer at once and close, so the listener never spins on a
            # connection it cannot serve (RFC 9110 §15.6.4: 503 with Retry-After).
            self._turn_away(503, "connection over --max-connections")
            shared.rejected_connections += 1
            return
        client = shared.clients.at_accept(self.peer)
        if client == "":
            self._turn_away(429, "connection over --max-connections-per-ip")
            return
        self.client = client
        shared.connections.add(self)
        shared.stats.connections_total += 1
        # The first request's head must arrive within --header-timeout of the connect.
        self._head_due = self.deadline.set(Watch.HEAD, shared.config.header_timeout)

    def _turn_away(self, status: int, why: str) -> None:
        """Refuse a connection at accept: answer ``status`` with Retry-After, close."""
        log.debug("%s from %s: %d", why, self.peer, status)
        self.no_more_requests = True
        plan = plan_error(status, None, close=True, extra=RETRY_AFTER)
        assert self.channel is not None
        self.channel.write(plan.wire())
        refused = Request(method="")  # logged with the request line "-", as refusals are
        self.shared.observer.record(
            self.peer, refused, status, plan.body_length, "inline", COMPLETE
        )
        self.close_gracefully()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is not Phase.CLOSED and self in self.shared.connections:
            self.shared.clients.release(self.client)
            self.client = None
        self.move(Phase.CLOSED)
        self.shared.connections.discard(self)
        self.responder.cancel(CLIENT_ABORTED, abort_transport=False)
        self.responder.drop()
        if self.channel is not None:
            self.channel.connection_lost()
        self.deadline.cancel()

    def data_received(self, data: bytes) -> None:
        if self.no_more_requests:
            return  # lingering after an error, or after the last request: discard
        refusal = self.reader.feed(data)
        if refusal is not None:
            if refusal < 0:  # an upgrade or CONNECT: answer what was asked, then close
                self.no_more_requests = True
                self.responder.last_closes()
                self._close_if_done()
            elif not self.no_more_requests:  # else: bytes after "Connection: close"
                self.no_more_requests = True
                self.responder.enqueue(Refusal(refusal))
            return
        if self.reader.request is not None:
            # A head is unfinished: --header-timeout runs from (about) its first byte, the
            # read it began in, and later bytes do not extend it.
            if self.deadline.watch is not Watch.HEAD:
                self._head_due = self.deadline.set(Watch.HEAD, self.shared.config.header_timeout)
        elif self.deadline.watch is Watch.HEAD and self.responder.owed:
            self.watch_send()
        # Until a head completes, only the header timeout applies: bytes that begin no
        # request (a lone CRLF, which llhttp skips) leave the HEAD watch as it was.
        # Complete requests while IDLE keep the idle deadline until they are answered
        # (one loop iteration later): one deadline update per request, not three.

    def eof_received(self) -> bool | None:
        self.no_more_requests = True
        channel = self.channel
        if channel is not None and self.tls:
            # A TLS transport closes on EOF whatever we return: what is still being sent
            # would be dropped (asyncio only warns). Stop it, so it is recorded as cut.
            channel.connection_lost()
            return None
        if self.phase is Phase.SENDING or self.responder.owed:
            return True  # half-closed client: finish what it asked for, then close
        return None  # close now

    def pause_writing(self) -> None:
        assert self.channel is not None
        self.channel.pause()

    def resume_writing(self) -> None:
        assert self.channel is not None
        self.channel.resume()
        if self.phase is Phase.IDLE and self.responder.pipeline:
            self.responder.run()

    # --- for the responder --------------------------------------------------------------

    def transport_closing(self) -> bool:
        return self.channel is None or self.channel.is_closing()

    def answered(self) -> None:
        """The queue is empty or waits: close if that was all, else read on."""
        if self.no_more_requests:
            self._close_if_done()
            return
        if self.phase is Phase.IDLE and not self.responder.pipeline:
            if self.reading_paused:
                self._resume_reading()
            if self.reader.request is None:
                self.deadline.set(Watch.IDLE, self.shared.config.keepalive_timeout)
            elif self.deadline.watch is not Watch.HEAD:
                # A head pipelined behind a response sent by a task: the send's watch
                # replaced its deadline; it is due when it was (perhaps already).
                self.deadline.set_at(Watch.HEAD, self._head_due)

    def count_client(self, request: Request) -> bool:
        """--max-connections-per-ip, for a connection from a trusted proxy: it counts for
        its latest request's client. False when that client is over the cap."""
        clients = self.shared.clients
        if not clients.trusted.trusts(self.peer):
            return True  # a direct client: counted (and capped) at accept
        client = clients.at_request(self.peer, self.client, request)
        self.client = client or None
        return client != ""

    def watch_send(self) -> None:
        """Start watching a send: its first look at the progress always counts as progress."""
        self._progress_mark = (-1, -1, -1)
        self.deadline.set(Watch.SEND, self.shared.config.send_timeout)

    # --- the deadline -------------------------------------------------------------------

    def _on_deadline(self, watch: Watch) -> None:
        if self.phase is Phase.CLOSED:
            return
        channel = self.channel
        assert channel is not None
        config = self.shared.config
        progressed = False
        if watch is Watch.SEND:
            tally = self.responder.tally
            mark = channel.progress(tally.sent if tally is not None else 0)
            progressed = mark != self._progress_mark
            self._progress_mark = mark
        action = expired(
            watch,
            idle=self.phase is Phase.IDLE,
            sending=self.phase is Phase.SENDING,
            queued=self.responder.owed,
            buffered=bool(channel.transport.get_write_buffer_size()),
            progressed=progressed,
        )
        if action is Action.REFUSE_408:
            log.debug("request head from %s not complete in %ss", self.peer, config.header_timeout)
            self.no_more_requests = True
            self.reader.abandon()
            self.responder.refuse(408, None)
        elif action is Action.ABORT:
            if watch is Watch.HEAD:
                self.reader.abandon()
            else:
                log.debug(
                    "no progress sending to %s in %ss: aborting", self.peer, config.send_timeout
                )
            self.abort(TIMED_OUT)
        elif action is Action.WATCH_SEND:
            if watch is Watch.SEND:
                self.deadline.set(Watch.SEND, config.send_timeout)  # progress: the mark stays
            else:
                self.watch_send()
        elif action is Action.WATCH_IDLE:
            self.deadline.set(Watch.IDLE, config.keepalive_timeout)
        elif action is Action.CLOSE_IDLE:
            self.close_if_idle()
        else:
            channel.transport.close()

    # --- reading and closing -------------------------------------------------------------

    def pause_reading_for_send(self) -> None:
        """Reading pauses while a body is sent, but on TLS: a TLS transport that stops
        delivering to us also defers the peer's EOF, and meanwhile drops our writes with a
        warning (asyncio's and uvloop's sslproto), so a half-closed client got a short
        body and a log saying complete. Read on; requests that arrive are queued (and a
        queued one pauses reading, MAX_QUEUED bounds it), an EOF stops the send."""
        if not self.tls:
            self.pause_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.channel is not None:
            self.reading_paused = True
            self.channel.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.channel is not None and self.phase is not Phase.CLOSED:
            self.reading_paused = False
            self.channel.transport.resume_reading()

    def _close_if_done(self) -> None:
        if (
            self.no_more_requests
            and self.phase is Phase.IDLE
            and not self.responder.pipeline
            and self.reader.request is None
        ):
            self.close_gracefully()

    def close_gracefully(self) -> None:
        """Send what is queued, then FIN; keep reading briefly so no RST destroys it."""
        if self.phase is Phase.CLOSING or self.phase is Phase.CLOSED:
            return
        self.move(Phase.CLOSING)
        self.no_more_requests = True
        self.responder.drop()
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
            and not self.responder.owed
            and self.reader.request is None
            and self.channel is not None
        ):
            self.move(Phase.CLOSING)
            self.no_more_requests = True
            self.channel.transport.close()

    def abort(self, outcome: str = SERVER_ERROR) -> None:
        """Drop the connection now: the response framing can no longer be honoured.

        A task in flight is cancelled first and the transport aborted once it has unwound
        (in its done-callback): aborting a stdlib transport while its loop.sendfile runs
        trips an asyncio bug (3.11: InvalidStateError in _call_connection_lost, the
        empty-waiter is still set), after which the loop's registration of the reused fd
        is wrong and the next connection is never read.
        """
        if self.phase is Phase.CLOSED:
            return
        self.move(Phase.CLOSING)
        self.no_more_requests = True
        self.responder.drop()
        if not self.responder.cancel(outcome, abort_transport=True):
            self.abort_transport()

    def abort_transport(self) -> None:
        if self.channel is not None:
            self.channel.transport.abort()
