"""What every connection of one server shares (built by ``server.process.app``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..config import Config
from ..observe.record import Observer
from ..observe.stats import Stats
from ..respond.handler import Handler
from ..send import SendBody
from .clients import ClientCounts

if TYPE_CHECKING:
    from .protocol import HttpProtocol


class Shared:
    """The server's planner, sender, observer and limits, and its open connections."""

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        handler: Handler,
        send_path: str,
        send_body: SendBody,
        observer: Observer,
    ) -> None:
        self.config = config
        self.loop = loop
        self.handler = handler
        self.send_path = send_path  # the body path for large files: "sendfile", ...
        self.send_body = send_body
        self.observer = observer
        self.stats: Stats = observer.stats
        self.inline_max = config.inline_body_max
        self.connections: set[HttpProtocol] = set()
        # --max-connections-per-ip: open connections by client (see clients.py).
        self.clients = ClientCounts(config.max_connections_per_ip, observer.trusted)
        # TLS connections accepted and still in their handshake, with when it must be over.
        self.handshakes: dict[HttpProtocol, float] = {}
        self.shutting_down = False
        self.rejected_connections = 0  # turned away at --max-connections

    def handshaking(self, protocol: HttpProtocol) -> HttpProtocol:
        """A TLS connection just accepted: it counts until its handshake is over (then
        ``connection_made`` moves it to ``connections``), or until the handshake timeout
        has surely closed it (a failed handshake tells the protocol nothing)."""
        self.handshakes[protocol] = self.loop.time() + self.config.header_timeout + 0.25
        return protocol

    def open_connections(self) -> int:
        """Connections counted against --max-connections and in the metrics: from accept,
        TLS ones in their handshake included."""
        handshakes = self.handshakes
        if handshakes:
            now = self.loop.time()
            for protocol in [p for p, due in handshakes.items() if due < now]:
                del handshakes[protocol]
        return len(self.connections) + len(handshakes)
