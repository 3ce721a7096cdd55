"""What a sender may use of a connection, and what it reports back.

Senders get a ``Channel``, never the connection: write to the transport, wait until it
takes writes again, wait until its buffer is empty, the socket to dup for sendfile, and
whether it is closing. What they did goes into a ``Tally`` the connection created and can
read at any time, also after cancelling the sender mid-body (bytes sent so far, for the
access log and the send deadline).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol


class Channel(Protocol):
    """The connection as a sender sees it."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport  # for the stdlib loop's loop.sendfile(transport, ...)
    sock_fd: int  # the connection's socket (-1: none), to dup for sendfile
    sock_family: socket.AddressFamily
    write_paused: bool  # the transport is over its high-water mark

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes on the transport (counted as progress)."""

    def is_closing(self) -> bool:
        """The transport is closing or lost: nothing more can be sent."""

    async def writable(self) -> None:
        """Return when the transport accepts writes again; raise ConnectionError if lost."""

    async def drained(self) -> None:
        """Return when the transport's buffer is empty; raise ConnectionError if lost."""


class Tally:
    """What a sender did: body bytes handed over so far, and the path that moved them."""

    __slots__ = ("sent", "via")

    def __init__(self, via: str) -> None:
        self.sent = 0
        self.via = via

    def __repr__(self) -> str:
        return f"Tally(sent={self.sent}, via={self.via!r})"


class SendAborted(Exception):
    """The response cannot be completed (client gone, file shrank, read error)."""


class ClientGone(SendAborted):
    """The client left (reset, closed, or the transport is closing): not our failure."""


class FileShrank(SendAborted):
    """The file ended before the promised Content-Length."""
