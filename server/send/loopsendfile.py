"""The stdlib loop's own zero-copy path: ``loop.sendfile(transport, ...)``.

Pitfalls it handles (measured, see ../shared/ZERO-COPY.md): if the first os.sendfile
fails (client already gone) asyncio raises SendfileNotAvailableError, a RuntimeError, not
a ConnectionError; it seeks the file object, so each response gets its own; and it
reports nothing of a partial send, so the bytes moved are read back from the file's
position, where asyncio leaves them.
"""

from __future__ import annotations

import asyncio
import socket
from typing import BinaryIO

from ..http.multipart import FileWindow, MemberWindow
from ..http.plan import ResponsePlan
from .buffered import Unsupported, opened, send_window_or_buffered
from .channel import Channel, ClientGone, SendAborted, Tally
from .dupsendfile import cork
from .pacing import Pacer
from .spans import Move

# TCP states in which we may still send (linux/tcp_states.h): ESTABLISHED, CLOSE_WAIT.
_TCP_SENDABLE_STATES = frozenset({1, 8})


def _tcp_alive(transport: asyncio.BaseTransport) -> bool:
    """False when the kernel says the TCP connection can no longer carry our bytes."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except (OSError, AttributeError):
        return True  # no TCP_INFO here: assume alive, as before the probe
    return info[0] in _TCP_SENDABLE_STATES


async def send_loop_sendfile(
    channel: Channel,
    head: bytes,
    plan: ResponsePlan,
    fd: int | None,
    pacer: Pacer | None,
    tally: Tally,
) -> Tally:
    """Head through the transport, file windows with ``loop.sendfile(transport, ...)``."""
    transport = channel.transport
    if channel.is_closing():
        raise ClientGone("connection closed")
    sock = transport.get_extra_info("socket")
    corked = sock is not None and cork(sock, True)
    channel.write(head)
    file = open(fd, "rb", buffering=0, closefd=False) if fd is not None else None  # noqa: SIM115
    try:
        for seg in plan.segments:
            if isinstance(seg, FileWindow):
                assert file is not None and fd is not None
                move = _span_move(channel, file, tally)
                await send_window_or_buffered(channel, fd, seg, move, pacer, tally)
            elif isinstance(seg, MemberWindow):
                with (
                    opened(plan, seg) as member,
                    open(member, "rb", buffering=0, closefd=False) as member_file,
                ):
                    window = FileWindow(seg.offset, seg.length)
                    own = _span_move(channel, member_file, tally)
                    await send_window_or_buffered(channel, member, window, own, pacer, tally)
            else:
                if channel.is_closing():
                    raise ClientGone("connection closed")
                channel.write(seg)
                tally.sent += len(seg)
    finally:
        if file is not None:
            file.close()
        if corked and not transport.is_closing():
            cork(sock, False)
    return tally


def _span_move(channel: Channel, file: BinaryIO, tally: Tally) -> Move:
    transport = channel.transport
    loop = channel.loop

    async def move(offset: int, count: int) -> int:
        try:
            return await loop.sendfile(transport, file, offset, count, fallback=False)
        except asyncio.SendfileNotAvailableError as exc:
            # Raised when the first os.sendfile fails, whatever the errno: the file cannot
            # be sent this way, or the client already left. Fall back only when the
            # connection lives, else the fallback's writes go to a dead transport.
            if channel.is_closing() or not _tcp_alive(transport):
                raise ClientGone("client went away") from exc
            raise Unsupported from exc
        except ConnectionError as exc:
            _count_partial(file, offset, tally)
            raise ClientGone(f"client went away: {exc}") from exc
        except OSError as exc:
            _count_partial(file, offset, tally)
            raise SendAborted(f"sendfile failed: {exc}") from exc
        except RuntimeError as exc:
            if not transport.is_closing():
                raise
            _count_partial(file, offset, tally)
            raise ClientGone("client went away") from exc  # "Transport is closing"
        except asyncio.CancelledError:
            _count_partial(file, offset, tally)
            raise

    return move


def _count_partial(file: BinaryIO, offset: int, tally: Tally) -> None:
    """What an interrupted loop.sendfile moved: asyncio leaves the file's position after
    the bytes it sent (and does not move it when it sent none)."""
    try:
        moved = file.tell() - offset
    except (OSError, ValueError):
        return
    if moved > 0:
        tally.sent += moved
