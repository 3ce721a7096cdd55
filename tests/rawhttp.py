"""A raw-socket HTTP/1.1 client for protocol edge cases: exact bytes out, parsed responses in."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


class ResponseReader:
    """Incremental parser for the responses this server sends (always Content-Length framed).

    Hand-written rather than httptools: llhttp cannot skip the body of a response to HEAD
    and then go on parsing the next pipelined response.
    """

    def __init__(self, head_requests: list[bool]) -> None:
        self.responses: list[RawResponse] = []
        self.head_requests = head_requests
        self.buf = bytearray()
        self._current: RawResponse | None = None
        self._body_left = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self._current is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[: end + 4]
                status_line, *lines = head.split("\r\n")
                version, status, *_ = status_line.split(" ", 2)
                if not version.startswith("HTTP/1."):
                    raise ValueError(f"bad status line {status_line[:80]!r}")
                resp = RawResponse(status=int(status))
                for line in lines:
                    name, _, value = line.partition(":")
                    resp.headers.append((name, value.strip(" \t")))
                self.responses.append(resp)
                i = len(self.responses) - 1
                no_body = (i < len(self.head_requests) and self.head_requests[i]) or (
                    resp.status in (204, 304) or 100 <= resp.status < 200
                )
                self._body_left = 0 if no_body else int(resp.header("content-length") or 0)
                self._current = resp
            take = min(self._body_left, len(self.buf))
            self._current.body += self.buf[:take]
            del self.buf[:take]
            self._body_left -= take
            if self._body_left:
                return
            self._current.complete = True
            self._current = None


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def exchange(
    port: int,
    data: bytes,
    expect: int = 1,
    head_requests: list[bool] | None = None,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
) -> tuple[list[RawResponse], bool]:
    """Send ``data``; read until ``expect`` complete responses or close.

    Returns the responses and whether the server closed the connection afterwards
    (checked with a short wait once the expected responses are in).
    """
    with connect(port, host, timeout) as sock:
        sock.sendall(data)
        return read_responses(sock, expect, head_requests, timeout)


def read_responses(
    sock: socket.socket,
    expect: int = 1,
    head_requests: list[bool] | None = None,
    timeout: float = 10.0,
    close_wait: float = 0.3,
    initial: bytes = b"",
) -> tuple[list[RawResponse], bool]:
    """Read responses from ``sock``; ``initial`` is what the caller already read of them."""
    reader = ResponseReader(head_requests or [])
    reader.feed(initial)
    deadline = time.monotonic() + timeout
    closed = False
    while True:
        done = sum(r.complete for r in reader.responses)
        remaining = deadline - time.monotonic()
        if done >= expect:
            remaining = close_wait
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        reader.feed(data)
    return reader.responses, closed


def get(
    target: str, host: str = "x", extra: str = "", method: str = "GET", version: str = "1.1"
) -> bytes:
    """The bytes of one simple request."""
    return f"{method} {target} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")
