"""Senders: execute a response plan's body over one of the send paths.

* ``inline`` (``inline.py``): small bodies read from the page cache into the head's
  buffer, one ``transport.write``.
* ``sendfile`` (``dupsendfile.py``): zero-copy on any loop, on an ``os.dup()`` of the
  socket; the uvloop path.
* ``loop.sendfile`` (``loopsendfile.py``): the stdlib loop's native sendfile.
* ``buffered`` (``buffered.py``): ``pread`` + ``transport.write``; the fallback for
  ``--no-sendfile``, TLS, and files that refuse sendfile.

Every sender writes the head and exactly ``plan.body_length`` body bytes, or raises
``SendAborted`` (the caller then closes the connection: the framing can no longer be
kept), and keeps its ``Tally`` up to date as it goes. Senders never close the file: its
``OpenFile`` owner does. They import nothing of the connection: a ``Channel`` is all
they see.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ..http.plan import ResponsePlan
from .buffered import send_buffered
from .channel import Channel, ClientGone, FileShrank, SendAborted, Tally
from .dupsendfile import send_sendfile
from .loopsendfile import send_loop_sendfile
from .pacing import Pacer

SendBody = Callable[
    [Channel, bytes, ResponsePlan, "int | None", "Pacer | None", Tally],
    Coroutine[Any, Any, Tally],
]

SENDERS: dict[str, SendBody] = {
    "sendfile": send_sendfile,
    "loop.sendfile": send_loop_sendfile,
    "buffered": send_buffered,
}

__all__ = [
    "SENDERS",
    "Channel",
    "ClientGone",
    "FileShrank",
    "Pacer",
    "SendAborted",
    "SendBody",
    "Tally",
]
