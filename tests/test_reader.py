"""The two ways of reading a head (reader.py) give one outcome: differential tests.

A connection starts reading whole heads (httptools without field callbacks, the kept
fields picked from the head's bytes, by field block); a head it cannot take whole is
read again field by field. Here the same bytes, in the same writes, go to a reader that
starts whole and to one that reads field by field from the first byte, and everything
the connection acts on must be equal: the requests completed (every field), the
refusal status, and whether a head is left unfinished.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict
from typing import Any

import pytest

from server.connection import reader as reader_module
from server.connection.reader import RequestReader
from server.http.request import Request

from .fuzzcorpus import generate, seeds

# Counted only by the field-by-field reader, for its limits: not acted on afterwards.
_NOT_COMPARED = {"header_count", "header_bytes", "started"}


def _run(pieces: list[bytes], field_by_field: bool) -> tuple[Any, ...]:
    """What the connection acts on: the requests completed (every field), the refusal
    (status, and whether the refused head was a HEAD, which gets no body), and, without
    a refusal, whether a head is left unfinished (the header timeout runs)."""
    got: list[Request] = []
    reader = RequestReader(got.append, None)
    if field_by_field:
        reader._field_by_field(b"")
    refusal = None
    for piece in pieces:
        refusal = reader.feed(piece)
        if refusal is not None:
            break  # the connection reads no more (protocol.data_received)
    requests = [{k: v for k, v in asdict(r).items() if k not in _NOT_COMPARED} for r in got]
    left = reader.request
    if refusal is not None:
        return requests, refusal, left is not None and left.method == "HEAD"
    return requests, None, left is not None


def _assert_same(pieces: list[bytes]) -> None:
    whole = _run(pieces, field_by_field=False)
    by_field = _run(pieces, field_by_field=True)
    if whole != by_field and whole[0] and whole[0] == by_field[0]:
        # The one difference, on purpose: bytes that fail after a complete request are
        # judged whole on a fresh parser, from their first byte; field by field, on
        # llhttp's leftovers of the request before (its method, so a 400 for garbage
        # after a HEAD went without a body; and the offsets invalid_method_status counts
        # from the read's start, so garbage could get 501). Both refuse.
        assert whole[1] in (400, 501) and by_field[1] in (400, 501), pieces
        assert whole[2] is False, pieces  # garbage is no HEAD
        return
    assert whole == by_field, pieces


BROWSER = (
    b"GET /a.bin HTTP/1.1\r\nHost: localhost:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
    b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Connection: keep-alive\r\nReferer: http://x/\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)

CASES = [
    BROWSER,
    BROWSER * 3,
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nhOsT:   a.example:80  \r\nRANGE:bytes=0-1\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / RTSP/1.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / RTSP/1.0\r\nHost: a\r\n\r\n",
    b"GET / RTSP/1.0\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"A: b\r\n" * 101 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"A: b\r\n" * 99 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + (b"X: " + b"v" * 4000 + b"\r\n") * 5 + b"\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
    b'GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x"\r\nIf-Modified-Since: y\r\n'
    b'If-Match: *\r\nIf-Unmodified-Since: z\r\nIf-Range: "q"\r\nWant-Repr-Digest: sha-256=1\r\n'
    b"Want-Digest: SHA-256\r\nOrigin: http://o\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nA: \xff\xfe\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nA: b\rc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
]


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_whole_and_by_field_agree_in_one_write(data: bytes) -> None:
    _assert_same([data])


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_whole_and_by_field_agree_split_anywhere(data: bytes) -> None:
    """Every two-write split (a head carried across reads), and byte by byte."""
    step = max(1, len(data) // 97)
    for cut in range(1, len(data), step):
        _assert_same([data[:cut], data[cut:]])
    if len(data) < 600:
        _assert_same([data[i : i + 1] for i in range(len(data))])


def test_whole_and_by_field_agree_on_the_fuzz_corpus() -> None:
    for case in generate(6000, seed=20261203):
        _assert_same(list(case.pieces))


def test_whole_and_by_field_agree_on_pipelined_mutants() -> None:
    rng = random.Random(7)
    base = seeds()
    mutants = [case.data for case in generate(600, seed=99)]
    for _ in range(1500):
        data = b"".join(rng.choice(base + mutants) for _ in range(rng.randint(2, 4)))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 3))))
        bounds = [0, *cuts, len(data)]
        _assert_same([data[a:b] for a, b in itertools.pairwise(bounds)])


def test_whole_heads_stay_whole_and_reuse_the_field_block() -> None:
    """The fast path is taken (not everything falls back), and a repeated field block
    is found by identity on the connection."""
    got: list[Request] = []
    reader = RequestReader(got.append, None)
    assert reader.feed(BROWSER * 2) is None
    assert type(reader) is RequestReader  # still reading whole heads
    first_block = reader._block
    assert reader.feed(BROWSER.replace(b"/a.bin", b"/b.bin")) is None
    assert reader._block is first_block
    assert [r.target for r in got] == [b"/a.bin", b"/a.bin", b"/b.bin"]
    assert got[2].user_agent is not None and got[2].user_agent.startswith("Mozilla/5.0")
    assert got[2].accept_encoding == "gzip, deflate, br"
    # A changed value is a different block: taken afresh, not the old values.
    assert reader.feed(BROWSER.replace(b"Referer: http://x/", b"Referer: http://y/")) is None
    assert got[3].referer == "http://y/"


def test_a_body_moves_the_connection_to_field_by_field() -> None:
    got: list[Request] = []
    reader = RequestReader(got.append, None)
    data = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /n HTTP/1.1\r\nHost: a\r\n\r\n"
    assert reader.feed(data) is None
    assert type(reader) is not RequestReader
    assert [(r.target, r.body_bytes) for r in got] == [(b"/", 2), (b"/n", 0)]


def test_the_field_block_table_is_bounded() -> None:
    reader = RequestReader(lambda r: None, None)
    for i in range(reader_module._FIELD_BLOCKS_MAX * 3):
        assert reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-N: %d\r\n\r\n" % i) is None
    assert len(reader_module._FIELD_BLOCKS) <= reader_module._FIELD_BLOCKS_MAX
