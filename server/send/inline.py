"""The inline path: head and a small body in one buffer, for one ``transport.write``.

Sendfile on a few KiB stalls on Nagle/delayed-ACK and costs more syscalls than the copy
it saves. Only page-cache hits are read here, on the loop thread; anything else goes to
the buffered path, which reads off the loop.
"""

from __future__ import annotations

from ..files.pagecache import read_cached_into
from ..http.multipart import FileWindow, MemberWindow
from ..http.plan import ResponsePlan


def render_inline(head: bytes, plan: ResponsePlan, fd: int | None) -> bytearray | None:
    """Head and whole body in one buffer, or None when a read would block or came short.

    None sends the caller to the async buffered path, which reads off the loop thread and
    deals with a file that shrank. Raises OSError on a read error.
    """
    buf = bytearray(len(head) + plan.body_length)
    view = memoryview(buf)
    pos = len(head)
    view[:pos] = head
    with view:
        for seg in plan.segments:
            if isinstance(seg, MemberWindow):
                return None  # an archive's members: sent by a task, never inline
            if isinstance(seg, FileWindow):
                end = pos + seg.length
                assert fd is not None
                if not read_cached_into(fd, view[pos:end], seg.offset):
                    return None
                pos = end
            else:
                end = pos + len(seg)
                view[pos:end] = seg
                pos = end
    return buf
