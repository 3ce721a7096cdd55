"""Regression tests for the second adversarial review (framing, control headers, and what
a differential fuzzer against nginx found), over every send path.

Each test names the finding it pins; each failed on the code before its fix.
"""

from __future__ import annotations

import time

import pytest

from .rawhttp import connect, exchange, get, read_all
from .serverproc import ServerProcess


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    with connect(port, timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock, timeout)


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status_line, fields, body


# --- 9a: error responses to HEAD carry no body (RFC 9110 §9.3.2) ----------------------------

HEAD_REFUSALS = [
    pytest.param(b"HEAD /x HTTP/1.1\r\n\r\n", "400", id="no-host"),
    pytest.param(b"HEAD /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400", id="duplicate-host"),
    pytest.param(b"HEAD /x HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", "400", id="obs-fold"),
    pytest.param(b"HEAD /x HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", "400", id="control-char"),
    pytest.param(b"HEAD /x HTTP/2.0\r\nHost: a\r\n\r\n", "505", id="http-2-0"),
]


@pytest.mark.parametrize(("request_bytes", "status"), HEAD_REFUSALS)
def test_a_refused_head_request_gets_no_body(server, request_bytes, status):
    status_line, fields, body = split(raw(server.port, request_bytes))
    assert status_line.split()[1] == status, status_line
    assert int(fields["content-length"]) > 0  # what a GET would have had
    assert body == b"", body
    assert fields.get("connection") == "close"


# --- 9b: an invalid Host is refused (RFC 9112 §3.2) -------------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("bad/host", 400, id="slash"),
        pytest.param("a b", 400, id="space"),
        pytest.param("a@b", 400, id="at-sign"),
        pytest.param("[::1", 400, id="unclosed-ip-literal"),
        pytest.param("h:8x", 400, id="bad-port"),
        pytest.param("example.com:8000", 200, id="name-and-port"),
        pytest.param("[::1]:80", 200, id="ip-literal"),
        pytest.param("127.0.0.1", 200, id="ipv4"),
        pytest.param("xn--bcher-kva.example", 200, id="idna"),
    ],
)
def test_host_field_value_is_validated(server, host, status):
    responses, _ = exchange(server.port, get("/hello.txt", host=host))
    assert responses[0].status == status


def test_empty_host_is_allowed(server):
    # RFC 9112 §3.2: a target without an authority is sent with an empty Host.
    responses, _ = exchange(server.port, b"GET /hello.txt HTTP/1.1\r\nHost:\r\n\r\n")
    assert responses[0].status == 200


# --- 9c: a final dot segment keeps the trailing slash (RFC 3986 §5.2.4) ------------------------


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/hello.txt/.", 404, id="file-then-dot-is-a-directory-path"),
        pytest.param("/hello.txt/zz/..", 404, id="file-then-dotdot-is-a-directory-path"),
        pytest.param("/dir/inner.txt/..", 200, id="dotdot-to-a-directory-serves-its-index"),
    ],
)
def test_final_dot_segments_are_directory_paths(server, tree, target, status):
    responses, _ = exchange(server.port, get(target))
    assert responses[0].status == status
    if status == 200:
        assert bytes(responses[0].body) == tree.files["dir/index.html"]


# --- 9d: HTTP/1.x above 1.1 is 1.1; another major version is 505 (RFC 9110 §6.2) ---------


@pytest.mark.parametrize(
    ("version", "status"),
    [("1.2", 200), ("1.9", 200), ("3.0", 505), ("0.9", 505)],
)
def test_higher_minor_version_is_answered_as_1_1(server, tree, version, status):
    responses, _ = exchange(server.port, get("/hello.txt", version=version))
    assert responses[0].status == status
    if status == 200:
        assert bytes(responses[0].body) == tree.files["hello.txt"]


# --- 8: framing and control headers --------------------------------------------------------


def test_http10_with_transfer_encoding_closes_after_the_response(server):
    # RFC 9112 §6.1: the framing of such a message is faulty: answer, then close.
    request = (
        b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    responses, closed = exchange(server.port, request)
    assert responses[0].status == 200
    assert responses[0].header("connection") == "close"
    assert closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            id="upgrade",
        ),
        pytest.param(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", id="connect"
        ),
    ],
)
def test_upgrade_and_connect_are_answered_with_connection_close(server, request_bytes):
    status_line, fields, _ = split(raw(server.port, request_bytes))
    assert status_line.split()[1] in ("200", "405"), status_line
    assert fields.get("connection") == "close"


def test_expect_100_continue_is_answered_at_once(server):
    """curl sends Expect: 100-continue and waits 1 s for an answer before the content;
    the server now answers at its head (and closes, since the content may follow)."""
    with connect(server.port) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        data = read_all(sock, timeout=5)
        took = time.monotonic() - started
    status_line, fields, _ = split(data)
    assert status_line.split()[1] == "405"
    assert fields.get("connection") == "close"
    assert took < 0.9, took  # not the 1 s a client waits before sending anyway


def test_expect_100_continue_without_content_is_answered_normally(server, tree):
    responses, closed = exchange(server.port, get("/hello.txt", extra="Expect: 100-continue\r\n"))
    assert responses[0].status == 200 and bytes(responses[0].body) == tree.files["hello.txt"]
    assert not closed


def test_any_other_expectation_gets_417(server):
    responses, closed = exchange(server.port, get("/hello.txt", extra="Expect: teapot\r\n"))
    assert responses[0].status == 417 and closed


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"FOO BAR BAZ\r\n\r\n", 400, id="three-bare-words"),
        pytest.param(b"FOO /x\r\n\r\n", 400, id="no-version"),
        pytest.param(b"FOO /x HTTP/1.1 extra\r\n\r\n", 400, id="four-words"),
        pytest.param(b"FOO /x HTTP/1.1\r\nHost: x\r\n\r\n", 501, id="well-formed-unknown-method"),
        pytest.param(b"PROPFIND /x HTTP/1.1\r\nHost: x\r\n\r\n", 405, id="known-method"),
    ],
)
def test_a_malformed_request_line_is_400_before_the_method_is_judged(server, request_bytes, status):
    responses, _ = exchange(server.port, request_bytes)
    assert responses[0].status == status


# --- 3: a lone CRLF does not stretch the header timeout ---------------------------------------


def test_a_lone_crlf_gets_408_after_the_header_timeout(tree, tmp_path):
    options = ["--header-timeout", "1", "--send-timeout", "30", "--keepalive-timeout", "30"]
    with ServerProcess(tree.root, options, logdir=tmp_path) as srv, connect(srv.port) as sock:
        started = time.monotonic()
        sock.sendall(b"\r\n")
        data = read_all(sock, timeout=20)
        took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data[:80]
    assert 0.8 <= took < 10, took  # the review saw 65 s and no 408
