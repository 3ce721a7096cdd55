"""A seeded mutation engine for raw HTTP/1.1 requests (pure: no I/O, no clock).

``generate(count, seed, etag)`` turns a handful of valid requests into ``count`` mutated
ones, deterministically: the same seed gives the same bytes, the same write splits and
the same half-close decisions, so a failing case can be replayed from its index.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

CRLF = b"\r\n"

# Targets that answer small (or bounded) bodies: big.bin and sparse.bin are left out so that
# no mutant can make 20,000 connections download gigabytes.
TARGETS = (
    b"/hello.txt",
    b"/small.bin",
    b"/empty.bin",
    b"/page.html",
    b"/data.json",
    b"/noext",
    b"/space%20name.txt",
    b"/%C3%BCn%C3%AFcode.txt",
    b"/%252e%252e",
    b"/dir",
    b"/dir/",
    b"/dir/inner.txt",
    b"/noindex",
    b"/noindex/",
    b"/link-inside.txt",
    b"/fifo",
    b"/missing.txt",
    b"/.env",
    b"/dir/../hello.txt",
    b"/%2e%2e/%2e%2e/etc/passwd",
)


def seeds(etag: str = '"0-0"') -> list[bytes]:
    """Valid requests that reach every part of the parser glue and the planner."""
    e = etag.encode("ascii")
    date = b"Wed, 21 Oct 2015 07:28:00 GMT"
    out = [
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /small.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-10\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=4000-\r\n\r\n",
        b"GET /medium.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0,-1,100-199\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5000-6000\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + e + b"\r\n\r\n",
        b'GET /small.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/"x", "y", *\r\n\r\n',
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nIf-Match: " + e + b"\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-20\r\nIf-Range: " + e + b"\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-20\r\nIf-Range: "
        + date
        + b"\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + date + b"\r\n\r\n",
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: " + date + b"\r\n\r\n",
        b"GET http://x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET https://x:8080/dir?q=1#frag HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /space%20name.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%C3%BCn%C3%AFcode.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%252e%252e HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /dir?a=1&b=%0d%0a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /dir/ HTTP/1.1\r\nHost: x\r\nUser-Agent: fuzz/1.0\r\nReferer: http://r/\r\n\r\n",
        b"GET /noindex/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /small.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /dir HTTP/1.1\r\nHost: x\r\n\r\nGET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /hello.txt HTTP/1.0\r\n\r\n",
        b"HEAD /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"HEAD /empty.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n",
        # Shapes from the second review: leading CRLFs (llhttp skips them without
        # beginning a message), TLS garbage on the plain port, Expect, HTTP/1.0 with
        # Transfer-Encoding, absolute-form targets under a mount prefix, long queries.
        b"\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\n\r\nHEAD /small.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
        b"Expect: 100-continue\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
        b"GET /hello.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\nGET /small.bin HTTP/1.0\r\n\r\n",
        b"GET http://x/mnt/dir HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/mnt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hello.txt?" + b"q=" + b"x" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /small.bin?"
        + b"&".join(b"k%d=v" % i for i in range(500))
        + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    out += [b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n" for t in TARGETS]
    return out


# The start of a TLS 1.2 ClientHello (record type 22, version 3.1), as a browser sends to
# an https:// URL that points at the plain port.
TLS_CLIENT_HELLO = (
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\x00\x00\x02\x13\x01"
)

# --- building blocks ----------------------------------------------------------------------

METHODS = (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT",
    b"PATCH", b"PRI", b"PROPFIND", b"get", b"Get", b"G ET", b"GETT", b"XYZZY", b"", b"-",
    b"GET\x00", b"\x16\x03\x01", b"M" * 40, b"\xff\xfe",
)  # fmt: skip
VERSIONS = (
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/9.9", b"HTTP/1",
    b"http/1.1", b"HTTP/1.10", b"HTTPS/1.1", b"HTTP/11", b"HTTP/ 1.1", b"", b"HTTP/1.1 x",
    b"HTTP/\xff.1", b"RTSP/1.0",
)  # fmt: skip
# Numbers that overflow, saturate or merely look like numbers. "0" * 4400 + "1" is small
# but has more digits than Python's int() accepts by default (4300).
HUGE_NUMBERS = (
    b"18446744073709551615", b"18446744073709551616", b"9223372036854775808",
    b"4294967296", b"9" * 30, b"9" * 400, b"0" * 60 + b"7", b"0" * 4400 + b"1",
    b"0" * 4400, b"-1", b"+5", b"1e9", b"0x10", b"5 5", b" 5", b"\xd9\xa3", b"",
)  # fmt: skip
SPECIAL_BYTES = (0x00, 0x01, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0A, 0x1B, 0x7F, 0x80, 0xA0, 0xFF)
HEADER_NAMES = (
    b"Host", b"Range", b"If-Range", b"If-None-Match", b"If-Match", b"If-Modified-Since",
    b"If-Unmodified-Since", b"Content-Length", b"Transfer-Encoding", b"Connection",
    b"User-Agent", b"Referer", b"Expect", b"Upgrade", b"X-Foo", b"Host ", b" Host",
    b"Ho\x00st", b"R\xe4nge", b"",
)  # fmt: skip
HEADER_VALUES = (
    b"x", b"", b"bytes=0-", b"bytes=-0", b"bytes=0-0," * 150, b"chunked", b"gzip, chunked",
    b"close", b"keep-alive", b"Upgrade", b"websocket", b"100-continue", b'"x"', b"*",
    b"W/", b"Wed, 21 Oct 2015 07:28:00 GMT", b"Sun, 06 Nov 1994 08:49:37 GMT extra",
    b"\xe9t\xe9", b"a\x7fb", b"a\tb", b"%0d%0aX-Injected: 1", b"x" * 3000,
)  # fmt: skip
TARGET_NOISE = (
    b"*", b"/", b"%", b"/%zz", b"/%", b"/%2", b"/%00", b"/%c0%ae%c0%ae/", b"/\\..\\",
    b"http://", b"http://x", b"https://x?", b"ftp://x/", b"//x", b"/?", b"/#", b"/a?b#c?d",
    b"/" + b"a" * 300, b"/" + b"../" * 60, b"/dir%2f..%2f..%2fetc", b"/" + b"%41" * 200,
)  # fmt: skip

_DIGITS = re.compile(rb"\d+")


def _head_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The head's lines and what follows them (from the blank line on)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data.split(CRLF), b""
    return data[:end].split(CRLF), data[end:]


def _join(lines: list[bytes], rest: bytes) -> bytes:
    return CRLF.join(lines) + rest


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


# --- mutations: each takes (rng, data) and returns new bytes --------------------------------


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes((data[i] ^ (1 << rng.randrange(8)),)) + data[i + 1 :]


def insert_byte(rng: random.Random, data: bytes) -> bytes:
    i = _pos(rng, data)
    return data[:i] + bytes((rng.randrange(256),)) + data[i:]


def delete_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 8) :]


def duplicate_line_ending(rng: random.Random, data: bytes) -> bytes:
    spots = [m.start() for m in re.finditer(rb"\r\n|\r|\n", data)]
    if not spots:
        return data
    i = rng.choice(spots)
    piece = rng.choice((b"\r\n", b"\r", b"\n", b"\r\r\n", b"\n\n"))
    return data[:i] + piece + data[i:]


def drop_cr_or_lf(rng: random.Random, data: bytes) -> bytes:
    spots = [i for i, c in enumerate(data) if c in (0x0D, 0x0A)]
    if not spots:
        return data
    i = rng.choice(spots)
    return data[:i] + data[i + 1 :]


def insert_special(rng: random.Random, data: bytes) -> bytes:
    """A NUL, control, DEL or high byte, anywhere or inside the target or a field value."""
    byte = bytes((rng.choice(SPECIAL_BYTES),))
    lines, rest = _head_lines(data)
    if rng.random() < 0.5 and len(lines) > 1:
        k = rng.randrange(len(lines))
        line = lines[k]
        colon = line.find(b":") if k else line.find(b" ")
        lo = colon + 1 if colon >= 0 else 0
        i = rng.randint(lo, len(line))
        lines[k] = line[:i] + byte + line[i:]
        return _join(lines, rest)
    i = _pos(rng, data)
    return data[:i] + byte + data[i:]


def duplicate_header(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _head_lines(data)
    if len(lines) < 2:
        return data
    k = rng.randrange(1, len(lines))
    lines.insert(k, lines[k])
    return _join(lines, rest)


def swap_header_names(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _head_lines(data)
    fields = [k for k in range(1, len(lines)) if b":" in lines[k]]
    if len(fields) < 2:
        return data
    a, b = rng.sample(fields, 2)
    na, _, va = lines[a].partition(b":")
    nb, _, vb = lines[b].partition(b":")
    lines[a], lines[b] = nb + b":" + va, na + b":" + vb
    return _join(lines, rest)


def add_header(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _head_lines(data)
    line = (
        rng.choice(HEADER_NAMES)
        + rng.choice((b": ", b":", b" : ", b":\t"))
        + rng.choice(HEADER_VALUES)
    )
    if rng.random() < 0.1:
        line = rng.choice((b" ", b"\t")) + line  # obs-fold
    lines.insert(rng.randint(1, max(1, len(lines))), line)
    return _join(lines, rest)


def huge_number(rng: random.Random, data: bytes) -> bytes:
    """A huge number in Range or Content-Length, or in place of any digits of the request."""
    n = rng.choice(HUGE_NUMBERS)
    choice = rng.randrange(3)
    if choice == 0:
        lines, rest = _head_lines(data)
        spec = rng.choice((n + b"-", b"-" + n, b"0-" + n, n + b"-" + n, b"1-2," + n + b"-"))
        lines.insert(min(1, len(lines)), b"Range: bytes=" + spec)
        return _join(lines, rest)
    if choice == 1:
        lines, rest = _head_lines(data)
        lines.insert(min(1, len(lines)), b"Content-Length: " + n)
        return _join(lines, rest)
    runs = list(_DIGITS.finditer(data))
    if not runs:
        return data
    m = rng.choice(runs)
    return data[: m.start()] + n + data[m.end() :]


def random_method(rng: random.Random, data: bytes) -> bytes:
    _method, sep, rest = data.partition(b" ")
    if not sep:
        return rng.choice(METHODS) + b" " + data
    return rng.choice(METHODS) + b" " + rest


def random_version(rng: random.Random, data: bytes) -> bytes:
    return re.sub(rb"HTTP/1\.[01]", lambda _: rng.choice(VERSIONS), data, count=rng.randint(1, 2))


def random_target(rng: random.Random, data: bytes) -> bytes:
    parts = data.split(b" ", 2)
    if len(parts) < 3:
        return data
    noise = rng.choice(TARGET_NOISE)
    if rng.random() < 0.5:
        noise = rng.choice(TARGETS) + noise
    return parts[0] + b" " + noise + b" " + parts[2]


def repeat_span(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 16))
    return data[:i] + data[i:j] * rng.choice((2, 10, 100, 1500)) + data[j:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: _pos(rng, data)]


def prepend_crlfs(rng: random.Random, data: bytes) -> bytes:
    """Empty lines before the request line (RFC 9112 §2.2 lets a server ignore one)."""
    return rng.choice((b"\r\n", b"\r\n" * 3, b"\n", b"\r\n" * 200)) + data


def not_http(rng: random.Random, data: bytes) -> bytes:
    """What is not a request at all: TLS on the plain port, or only empty lines."""
    return rng.choice(
        (TLS_CLIENT_HELLO, TLS_CLIENT_HELLO + data, b"\r\n", b"\r\n\r\n", b"\x00" + data)
    )


def long_query(rng: random.Random, data: bytes) -> bytes:
    """A query string of a few KB on the target (the cache must not key by it)."""
    parts = data.split(b" ", 2)
    if len(parts) < 3:
        return data
    query = b"&".join(
        b"p%d=%s" % (i, b"v" * rng.randint(1, 64)) for i in range(rng.randint(1, 120))
    )
    return (
        parts[0] + b" " + parts[1] + (b"&" if b"?" in parts[1] else b"?") + query + b" " + parts[2]
    )


MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    flip_bit,
    insert_byte,
    delete_bytes,
    duplicate_line_ending,
    drop_cr_or_lf,
    insert_special,
    duplicate_header,
    swap_header_names,
    add_header,
    huge_number,
    random_method,
    random_version,
    random_target,
    repeat_span,
    truncate,
    prepend_crlfs,
    not_http,
    long_query,
)


@dataclass(frozen=True)
class FuzzCase:
    index: int
    data: bytes
    pieces: tuple[bytes, ...]  # the writes, in order (b"".join(pieces) == data)
    half_close: bool  # shut down our sending side after the last write
    mutations: tuple[str, ...]

    def describe(self) -> str:
        return f"#{self.index} {'+'.join(self.mutations) or 'seed'} {self.data[:300]!r}"


def _split(rng: random.Random, data: bytes) -> tuple[bytes, ...]:
    if len(data) < 2 or rng.random() < 0.7:
        return (data,)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 5))))
    bounds = [0, *cuts, len(data)]
    return tuple(data[a:b] for a, b in itertools.pairwise(bounds))


def generate(
    count: int, seed: int = 1234, etag: str = '"0-0"', keep_open_share: float = 0.02
) -> list[FuzzCase]:
    """``count`` cases; about 1 in 20 is an unmutated seed (the server must still answer it),
    the rest carry one to four mutations. ``keep_open_share`` of the connections are not
    half-closed: those wait for a response while the server still reads."""
    rng = random.Random(seed)
    base = seeds(etag)
    cases = []
    for index in range(count):
        data = rng.choice(base)
        applied: list[str] = []
        if rng.random() >= 0.05:
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                mutation = rng.choice(MUTATIONS)
                data = mutation(rng, data)
                applied.append(mutation.__name__)
        pieces = _split(rng, data)
        half_close = rng.random() >= keep_open_share
        cases.append(FuzzCase(index, data, pieces, half_close, tuple(applied)))
    return cases
