"""What every connection of one server shares (built by ``server.process.app``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..config import Config
from ..observe.record import Observer
from ..observe.stats import Stats
from ..respond.handler import Handler
from ..send import SendBody

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
        self.shutting_down = False
        self.rejected_connections = 0  # turned away at --max-connections
