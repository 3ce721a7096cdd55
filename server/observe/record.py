"""The response record: one per request that got a status, the only thing logging and
metrics read.

``Observer.record`` is called exactly once for every response the server gives, whatever
becomes of it: served whole, cut off by the client, timed out, or failed on our side. It
counts the response and its bytes by send path and, when someone reads them, by method
and status with its duration (``--metrics``), writes the debug line, and the access-log
line (nginx logs every request, an aborted download with the bytes it got).
"""

from __future__ import annotations

import asyncio
import logging

from ..http.forwarded import TrustedPeers, client_address
from ..http.request import Request
from .accesslog import AccessLog
from .stats import Stats

# Logged under the connection's name: tests and operators grep "zerocopy.protocol".
log = logging.getLogger("zerocopy.protocol")

# How a response ended (the JSON access log's "outcome").
COMPLETE = "complete"
CLIENT_ABORTED = "client-aborted"
TIMED_OUT = "timed-out"
SERVER_ERROR = "server-error"
OUTCOMES = (COMPLETE, CLIENT_ABORTED, TIMED_OUT, SERVER_ERROR)


def _loggable(target: bytes) -> str:
    return target[:200].decode("latin-1").encode("unicode_escape").decode("ascii")


class Observer:
    """Where every response's record goes."""

    __slots__ = ("access_log", "debug", "loop", "stats", "timed", "trusted")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stats: Stats,
        access_log: AccessLog | None,
        trusted: TrustedPeers,
        timed: bool,
    ) -> None:
        self.loop = loop
        self.stats = stats
        self.access_log = access_log
        self.trusted = trusted
        # Per-request timing and status counts cost ~1 µs: only when someone reads them.
        self.timed = timed
        self.debug = log.isEnabledFor(logging.DEBUG)

    def record(
        self, peer: str, request: Request, status: int, sent: int, via: str, outcome: str
    ) -> None:
        """One response: ``sent`` body bytes handed over ``via`` a send path ("" when
        nothing was sent), ending as ``outcome``."""
        stats = self.stats
        stats.responses_by_path[via] += 1
        if sent:
            stats.bytes_by_path[via] += sent
        if self.timed:
            started = request.started
            stats.response(request.method, status, self.loop.time() - started if started else 0.0)
        if self.debug:
            log.debug(
                "%s %s -> %d, %d body bytes via %s (%s)",
                request.method or "-",
                _loggable(request.target),
                status,
                sent,
                via or "-",
                outcome,
            )
        access_log = self.access_log
        if access_log is not None:
            if request.forwarded is None and request.x_forwarded_for is None:
                client = peer
            else:
                client = client_address(
                    peer, self.trusted, request.forwarded, request.x_forwarded_for
                )
            access_log.log(client, request, status, sent, outcome)
