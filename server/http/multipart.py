"""``multipart/byteranges`` bodies (RFC 9110 §14.6) as windows over the file.

The body never holds file bytes: part headers are small byte strings and each part's data
is a (offset, length) window the sender moves with sendfile. On the wire, for a file of
1000 bytes and ``Range: bytes=0-9,500-509``::

    HTTP/1.1 206 Partial Content
    Content-Type: multipart/byteranges; boundary=<B>
    Content-Length: <exact, computed up front>

    \\r\\n--<B>\\r\\n
    Content-Type: text/plain; charset=utf-8\\r\\n
    Content-Range: bytes 0-9/1000\\r\\n
    \\r\\n
    <10 bytes of the file from offset 0>
    \\r\\n--<B>\\r\\n
    Content-Type: text/plain; charset=utf-8\\r\\n
    Content-Range: bytes 500-509/1000\\r\\n
    \\r\\n
    <10 bytes of the file from offset 500>
    \\r\\n--<B>--\\r\\n
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .ranges import ByteRange

# 128 random bits: a boundary must not occur inside the parts, and one a client cannot
# predict cannot be planted in a file either.
BOUNDARY_BYTES = 16


@dataclass(frozen=True, slots=True)
class FileWindow:
    """``length`` bytes of the response's file starting at ``offset``."""

    offset: int
    length: int


Segment = bytes | FileWindow


def new_boundary() -> str:
    return secrets.token_hex(BOUNDARY_BYTES)


def multipart_body(
    ranges: tuple[ByteRange, ...], size: int, content_type: str, boundary: str
) -> tuple[list[Segment], int]:
    """The body segments and their exact total length for a multi-range response."""
    segments: list[Segment] = []
    total = 0
    for r in ranges:
        part_head = (
            f"\r\n--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode("latin-1")
        segments.append(part_head)
        segments.append(FileWindow(r.start, r.length))
        total += len(part_head) + r.length
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    segments.append(tail)
    return segments, total + len(tail)
