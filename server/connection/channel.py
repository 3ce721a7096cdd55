"""The connection's transport as senders see it (``server.send.Channel``), with flow control.

The protocol forwards ``pause_writing``/``resume_writing`` here; senders wait on
``writable()`` and ``drained()``. Every write is checked against a dead transport, so a
sender notices a lost client at its next write, not only at ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios

_TCP_ESTABLISHED = 1  # linux/tcp_states.h


def unsent_bytes(fd: int) -> int:
    """Bytes still in the kernel's send queue of a socket (SIOCOUTQ), or -1."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return -1


class TransportChannel:
    """A transport, its flow control, and the count of bytes handed to it."""

    __slots__ = (
        "_sock",
        "_waiter",
        "bytes_out",
        "loop",
        "lost",
        "sock_family",
        "sock_fd",
        "tls",
        "transport",
        "write_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
        self.loop = loop
        self.transport = transport
        self.sock_fd = -1
        self.sock_family: socket.AddressFamily = socket.AF_INET
        sock = self._sock = transport.get_extra_info("socket")
        if sock is not None:
            self.sock_fd = sock.fileno()
            self.sock_family = sock.family
        self.tls = transport.get_extra_info("ssl_object") is not None
        self.write_paused = False
        self.lost = False
        self.bytes_out = 0  # bytes handed to the transport, all responses
        self._waiter: asyncio.Future[None] | None = None

    # --- Channel ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)
        self.bytes_out += len(data)

    def is_closing(self) -> bool:
        return self.lost or self.transport.is_closing() or (self.tls and self._peer_finished())

    def _peer_finished(self) -> bool:
        """TLS: the client half-closed (TCP CLOSE_WAIT). A TLS transport then shuts down
        and drops what it is given, with only a warning, while telling us nothing until it
        is done (asyncio's and uvloop's sslproto): so a sender asks the kernel."""
        sock = self._sock
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except (OSError, AttributeError):
            return False
        return state != _TCP_ESTABLISHED

    async def writable(self) -> None:
        """Return when the transport accepts writes again (at once when it does now)."""
        if self.lost:
            raise ConnectionResetError("connection lost")
        if not self.write_paused:
            return
        fut = self.loop.create_future()
        self._waiter = fut
        await fut

    async def drained(self) -> None:
        """Return when the transport's buffer is empty (before writing around it)."""
        transport = self.transport
        if not transport.get_write_buffer_size():
            return
        # With both limits at 0, pause_writing/resume_writing mean exactly "not empty" and
        # "empty"; setting them pauses us now if anything is queued.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            while transport.get_write_buffer_size():
                if self.lost:
                    raise ConnectionResetError("connection lost")
                if self.write_paused:
                    await self.writable()
                else:
                    await asyncio.sleep(0)
        finally:
            if not self.lost:
                transport.set_write_buffer_limits()

    # --- from the protocol ------------------------------------------------------------------

    def pause(self) -> None:
        self.write_paused = True

    def resume(self) -> None:
        self.write_paused = False
        self._wake(None)

    def connection_lost(self) -> None:
        self.lost = True
        self._wake(ConnectionResetError("connection lost"))

    def _wake(self, exc: Exception | None) -> None:
        fut = self._waiter
        if fut is not None:
            self._waiter = None
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    # --- for the send deadline --------------------------------------------------------------

    def progress(self, sent: int) -> tuple[int, int, int]:
        """What moves while a response makes progress: bytes out (``sent`` of the body in
        flight included), the transport's buffer, the kernel's send queue (a slow reader
        drains only the last two)."""
        buffered = self.transport.get_write_buffer_size()
        queued = unsent_bytes(self.sock_fd) if self.sock_fd >= 0 else 0
        return self.bytes_out + sent, buffered, queued
