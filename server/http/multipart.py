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


@dataclass(frozen=True, slots=True)
class MemberRef:
    """An archive member's file as the snapshot saw it (opened, and checked, at send)."""

    path: str
    ino: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class MemberWindow:
    """``length`` bytes of the archive member ``member`` (an index into the plan's
    ``members``) starting at ``offset``: archives send many files."""

    member: int
    offset: int
    length: int


Segment = bytes | FileWindow | MemberWindow


def segment_length(seg: Segment) -> int:
    return len(seg) if isinstance(seg, bytes) else seg.length


def slice_segments(segments: tuple[Segment, ...], start: int, length: int) -> list[Segment]:
    """The segments that carry bytes ``start`` to ``start + length`` of a body."""
    out: list[Segment] = []
    pos = 0
    end = start + length
    for seg in segments:
        n = segment_length(seg)
        lo, hi = max(start, pos), min(end, pos + n)
        if lo < hi:
            a, b = lo - pos, hi - pos
            if isinstance(seg, bytes):
                out.append(seg[a:b])
            elif isinstance(seg, FileWindow):
                out.append(FileWindow(seg.offset + a, b - a))
            else:
                out.append(MemberWindow(seg.member, seg.offset + a, b - a))
        pos += n
        if pos >= end:
            break
    return out


def new_boundary() -> str:
    return secrets.token_hex(BOUNDARY_BYTES)


def multipart_body(
    ranges: tuple[ByteRange, ...],
    size: int,
    content_type: str,
    boundary: str,
    body: tuple[Segment, ...] | None = None,
) -> tuple[list[Segment], int]:
    """The body segments and their exact total length for a multi-range response; the
    parts are windows over the file, or slices of ``body`` when given (an archive)."""
    segments: list[Segment] = []
    total = 0
    for r in ranges:
        part_head = (
            f"\r\n--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode("latin-1")
        segments.append(part_head)
        if body is None:
            segments.append(FileWindow(r.start, r.length))
        else:
            segments.extend(slice_segments(body, r.start, r.length))
        total += len(part_head) + r.length
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    segments.append(tail)
    return segments, total + len(tail)
