"""HTTP/1.1 connection handling over raw sockets: framing, pipelining, limits, errors."""

from __future__ import annotations

import socket
import time

import pytest

from .conftest import BIG_SIZE
from .rawhttp import connect, exchange, get, read_all, read_responses

# --- keep-alive, pipelining, order ---------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(server, tree):
    rels = ["hello.txt", "big.bin", "small.bin", "medium.bin", "big.bin", "hello.txt"]
    data = b"".join(get("/" + rel) for rel in rels)
    responses, closed = exchange(server.port, data, expect=len(rels))
    assert [r.status for r in responses] == [200] * len(rels)
    for resp, rel in zip(responses, rels, strict=True):
        assert bytes(resp.body) == tree.files[rel], rel
    assert not closed


def test_pipelined_head_and_ranges_keep_framing(server, tree):
    big = tree.files["big.bin"]
    data = (
        get("/big.bin", method="HEAD")
        + get("/big.bin", extra="Range: bytes=10-19\r\n")
        + get("/big.bin", extra="Range: bytes=0-9,100-109\r\n")
        + get("/hello.txt")
    )
    responses, _ = exchange(server.port, data, expect=4, head_requests=[True, False, False, False])
    assert [r.status for r in responses] == [200, 206, 206, 200]
    assert responses[0].body == b"" and responses[0].header("content-length") == str(BIG_SIZE)
    assert bytes(responses[1].body) == big[10:20]
    assert b"Content-Range: bytes 100-109/" in responses[2].body
    assert bytes(responses[3].body) == tree.files["hello.txt"]


def test_requests_split_byte_by_byte_are_parsed(server, tree):
    with connect(server.port) as sock:
        for b in get("/hello.txt", extra="Range: bytes=0-4\r\n"):
            sock.send(bytes([b]))
        responses, _ = read_responses(sock)
    assert responses[0].status == 206 and bytes(responses[0].body) == b"hello"


def test_many_pipelined_requests_in_one_packet(server, tree):
    n = 300
    responses, closed = exchange(server.port, get("/hello.txt") * n, expect=n)
    assert len(responses) == n and all(bytes(r.body) == tree.files["hello.txt"] for r in responses)
    assert not closed


def test_http10_closes_after_response(server, tree):
    responses, closed = exchange(server.port, get("/hello.txt", version="1.0"))
    assert responses[0].status == 200 and closed
    assert responses[0].header("connection") == "close"


def test_http10_without_host_is_fine(server, tree):
    responses, _ = exchange(server.port, b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert responses[0].status == 200


def test_http10_keep_alive_is_honoured(server, tree):
    req = get("/hello.txt", version="1.0", extra="Connection: keep-alive\r\n")
    responses, closed = exchange(server.port, req * 2, expect=2)
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].header("connection") == "keep-alive"
    assert not closed


def test_connection_close_is_honoured_and_later_requests_ignored(server, tree):
    data = get("/hello.txt", extra="Connection: close\r\n") + get("/small.bin")
    responses, closed = exchange(server.port, data, expect=2, timeout=3)
    assert len(responses) == 1 and closed
    assert responses[0].header("connection") == "close"


def test_half_closed_client_still_gets_its_responses(server, tree):
    with connect(server.port) as sock:
        sock.sendall(get("/big.bin") + get("/hello.txt"))
        sock.shutdown(socket.SHUT_WR)
        responses, closed = read_responses(sock, expect=2)
    assert [bytes(r.body) for r in responses] == [tree.files["big.bin"], tree.files["hello.txt"]]
    assert closed


def test_client_leaving_mid_body_does_not_disturb_others(server, tree):
    for _ in range(5):
        with connect(server.port) as sock:
            sock.sendall(get("/big.bin"))
            sock.recv(1000)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    responses, _ = exchange(server.port, get("/big.bin"))
    assert bytes(responses[0].body) == tree.files["big.bin"]


def test_get_with_small_body_is_read_and_discarded(server, tree):
    data = get("/hello.txt", extra="Content-Length: 5\r\n") + b"abcde" + get("/small.bin")
    responses, _ = exchange(server.port, data, expect=2)
    assert [r.status for r in responses] == [200, 200]
    assert bytes(responses[1].body) == tree.files["small.bin"]


def test_chunked_body_on_get_is_discarded(server, tree):
    data = (
        get("/hello.txt", extra="Transfer-Encoding: chunked\r\n")
        + b"5\r\nabcde\r\n0\r\n\r\n"
        + get("/hello.txt")
    )
    responses, _ = exchange(server.port, data, expect=2)
    assert [r.status for r in responses] == [200, 200]


def test_absolute_form_target_uses_its_path(server, tree):
    responses, _ = exchange(server.port, get("http://example.com/hello.txt?x"))
    assert responses[0].status == 200 and bytes(responses[0].body) == tree.files["hello.txt"]


def test_upgrade_request_is_answered_as_plain_get(server, tree):
    extra = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    responses, _ = exchange(server.port, get("/hello.txt", extra=extra))
    assert responses[0].status == 200 and bytes(responses[0].body) == tree.files["hello.txt"]


def test_options_asterisk(server):
    responses, _ = exchange(server.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert responses[0].status == 204 and responses[0].header("allow") == "GET, HEAD, OPTIONS"
    assert responses[0].header("content-length") is None  # RFC 9110 §8.6


# --- rejected requests: status, then close -----------------------------------------------

REJECTED = [
    pytest.param(b"GET /hello.txt HTTP/1.1\r\n\r\n", 400, id="http11-without-host"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        id="te-and-cl-smuggling",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
        id="duplicate-content-length",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, id="bare-cr"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        id="invalid-chunk-size",
    ),
    pytest.param(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="space-in-target"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, id="tls-hello"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, id="http2-version"),
    pytest.param(b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501, id="unknown-method"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n", 413, id="large-body"
    ),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="long-target"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"v" * 17000 + b"\r\n\r\n",
        431,
        id="huge-header",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(101))
        + b"\r\n",
        431,
        id="too-many-fields",
    ),
]


@pytest.mark.parametrize("data, status", REJECTED)
def test_rejected_requests_get_status_and_close(server, data, status):
    responses, closed = exchange(server.port, data, timeout=5)
    assert len(responses) == 1
    assert responses[0].status == status
    assert responses[0].header("connection") == "close"
    assert bytes(responses[0].body).startswith(str(status).encode())
    assert closed


def test_rejection_comes_after_earlier_pipelined_responses(server, tree):
    data = get("/big.bin") + get("/hello.txt") + b"GET / HTTP/1.1\r\n\r\n"
    responses, closed = exchange(server.port, data, expect=3)
    assert [r.status for r in responses] == [200, 200, 400]
    assert bytes(responses[0].body) == tree.files["big.bin"]
    assert closed


def test_slowly_growing_header_line_is_cut_off(server):
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
        try:
            for _ in range(40):
                sock.sendall(b"v" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        responses, closed = read_responses(sock, timeout=5)
    assert responses and responses[0].status == 431
    assert closed


def test_error_close_does_not_destroy_the_response(server):
    """After an error the server must not RST: trailing unread bytes must not eat the reply."""
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 200_000)
        time.sleep(0.2)
        data = read_all(sock, timeout=5)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_bad_percent_encoding_is_400_but_keeps_the_connection(server, tree):
    data = get("/a%zz") + get("/%00") + get("/%c0%ae%c0%ae/") + get("/hello.txt")
    responses, closed = exchange(server.port, data, expect=4)
    assert [r.status for r in responses] == [400, 400, 400, 200]
    assert not closed


def test_small_response_after_a_corked_body_is_not_held_back(server, tree):
    """Sendfile bodies are sent with TCP_CORK; a cork left on would hold the next small
    response for the kernel's 200 ms cork timer."""
    with connect(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        delays = []
        for _ in range(5):
            sock.sendall(get("/big.bin"))
            responses, _ = read_responses(sock, close_wait=0.0)
            assert bytes(responses[0].body) == tree.files["big.bin"]
            start = time.monotonic()
            sock.sendall(get("/hello.txt"))
            responses, _ = read_responses(sock, close_wait=0.0)
            delays.append(time.monotonic() - start)
            assert bytes(responses[0].body) == tree.files["hello.txt"]
    assert sorted(delays)[2] < 0.1, delays
