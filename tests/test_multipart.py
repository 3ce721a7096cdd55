"""multipart/byteranges bodies (RFC 9110 §14.6)."""

from __future__ import annotations

import re

import pytest

from server.http.multipart import FileWindow, multipart_body, new_boundary
from server.http.ranges import ByteRange

BOUNDARY = "0123456789abcdef0123456789abcdef"
GiB = 1024**3


def _render(segments, data: bytes) -> bytes:
    """The body as a client receives it, with file windows filled from ``data``."""
    out = bytearray()
    for seg in segments:
        if isinstance(seg, FileWindow):
            out += data[seg.offset : seg.offset + seg.length]
        else:
            out += seg
    return bytes(out)


def _total(segments) -> int:
    return sum(s.length if isinstance(s, FileWindow) else len(s) for s in segments)


CASES = [
    pytest.param([(0, 10)], 100, "text/plain; charset=utf-8", id="one-part"),
    pytest.param([(0, 10), (50, 60)], 100, "text/plain; charset=utf-8", id="two-parts"),
    pytest.param([(90, 100), (0, 1)], 100, "application/octet-stream", id="out-of-order-parts"),
    pytest.param([(i, i + 1) for i in range(0, 200, 2)], 1000, "image/png", id="hundred-parts"),
    pytest.param(
        [(4 * GiB, 4 * GiB + 5), (5 * GiB, 5 * GiB + 1)],
        6 * GiB,
        "application/octet-stream",
        id="offsets-beyond-4GiB",
    ),
]


@pytest.mark.parametrize(("ranges", "size", "ctype"), CASES)
def test_total_length_equals_sum_of_segment_lengths(ranges, size, ctype):
    brs = tuple(ByteRange(a, b) for a, b in ranges)
    segments, total = multipart_body(brs, size, ctype, BOUNDARY)
    assert total == _total(segments)


@pytest.mark.parametrize(("ranges", "size", "ctype"), CASES)
def test_file_windows_match_ranges_in_order(ranges, size, ctype):
    brs = tuple(ByteRange(a, b) for a, b in ranges)
    segments, _ = multipart_body(brs, size, ctype, BOUNDARY)
    windows = [(s.offset, s.offset + s.length) for s in segments if isinstance(s, FileWindow)]
    assert windows == ranges


@pytest.mark.parametrize(("ranges", "size", "ctype"), CASES)
def test_part_headers_carry_content_type_and_content_range(ranges, size, ctype):
    brs = tuple(ByteRange(a, b) for a, b in ranges)
    segments, _ = multipart_body(brs, size, ctype, BOUNDARY)
    heads = [s for s in segments if isinstance(s, bytes)][:-1]
    assert len(heads) == len(ranges)
    for head, (a, b) in zip(heads, ranges, strict=True):
        text = head.decode("latin-1")
        assert f"\r\n--{BOUNDARY}\r\n" in text
        assert f"\r\nContent-Type: {ctype}\r\n" in text
        assert f"\r\nContent-Range: bytes {a}-{b - 1}/{size}\r\n" in text
        assert text.endswith("\r\n\r\n")


def test_body_uses_crlf_and_parses_as_multipart_byteranges():
    data = bytes(range(256)) * 4
    brs = (ByteRange(0, 10), ByteRange(500, 510))
    segments, total = multipart_body(brs, len(data), "application/octet-stream", BOUNDARY)
    body = _render(segments, data)
    assert len(body) == total
    # No bare LF outside the file windows: every line break in the framing is CRLF.
    framing = b"".join(s for s in segments if isinstance(s, bytes))
    assert re.search(rb"(?<!\r)\n", framing) is None
    assert body.endswith(f"\r\n--{BOUNDARY}--\r\n".encode())
    assert body.count(f"--{BOUNDARY}--".encode()) == 1
    parts = body.split(f"--{BOUNDARY}".encode())
    # preamble, two parts, closing "--\r\n"
    assert parts[-1] == b"--\r\n"
    got = []
    for part in parts[1:-1]:
        head, _, payload = part.partition(b"\r\n\r\n")
        assert payload.endswith(b"\r\n")  # the CRLF belongs to the next delimiter
        fields = dict(line.split(b": ", 1) for line in head.strip(b"\r\n").split(b"\r\n"))
        assert fields[b"Content-Type"] == b"application/octet-stream"
        m = re.fullmatch(rb"bytes (\d+)-(\d+)/(\d+)", fields[b"Content-Range"])
        assert m is not None
        first, last, size = (int(x) for x in m.groups())
        assert size == len(data)
        assert payload[:-2] == data[first : last + 1]
        got.append((first, last))
    assert got == [(0, 9), (500, 509)]


def test_closing_delimiter_is_last_segment():
    segments, _ = multipart_body((ByteRange(0, 1), ByteRange(3, 4)), 10, "x/y", BOUNDARY)
    assert segments[-1] == f"\r\n--{BOUNDARY}--\r\n".encode()


def test_new_boundary_has_at_least_96_bits():
    boundary = new_boundary()
    assert re.fullmatch(r"[0-9a-f]+", boundary)
    assert len(boundary) >= 24
    # RFC 2046 §5.1.1: 1 to 70 characters.
    assert len(boundary) <= 70


def test_new_boundary_differs_between_calls():
    assert len({new_boundary() for _ in range(100)}) == 100
