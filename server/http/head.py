"""The one response-head serializer: status line, fields, Date, Server, Connection.

Every head the server writes, planned, cached or the metrics listener's, is made here, in
two parts:

* ``serialize(status, fields)``: the status line, ``Server`` and the response's own fields,
  everything that does not depend on the connection or the clock. The file cache stores
  exactly these bytes.
* ``DATE_CLOCK.tail(kind)``: ``Date``, ``Connection`` when the connection needs one, and
  the blank line that ends the head; formatted at most once per second.

So a field that every response must carry is added in one place, ``serialize``. Nothing
from the request reaches a field value raw: the only request-derived values are Location
(``paths.directory_redirect``, percent-encoded) and Content-Disposition
(``content_disposition`` below).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import quote

from .httpdate import format_http_date

SERVER_NAME = "zerocopy-server"

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_STATUS_AND_SERVER = {
    code: f"HTTP/1.1 {code} {reason}\r\nServer: {SERVER_NAME}\r\n"
    for code, reason in REASONS.items()
}

Field = tuple[str, str]
Fields = tuple[Field, ...]


def serialize(status: int, fields: Iterable[Field]) -> bytes:
    """Status line, ``Server`` and ``fields``: a head without its connection tail."""
    return (
        _STATUS_AND_SERVER[status] + "".join([f"{name}: {value}\r\n" for name, value in fields])
    ).encode("latin-1")


# What the connection needs said at the end of a head: nothing for HTTP/1.1 keep-alive,
# "close" when closing, "keep-alive" for HTTP/1.0 (which must ask for it).
_CONNECTION_LINES = (b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n")


class DateClock:
    """The heads' tails (``Date`` and ``Connection``), remade at most once per second
    (RFC 9110 §6.6.1: Date is the time the message was generated, to the second)."""

    __slots__ = ("_second", "_tails")

    def __init__(self) -> None:
        self._second = -1
        self._tails: tuple[bytes, bytes, bytes] = (b"", b"", b"")

    def tail(self, close: bool, version: str) -> bytes:
        """``Date``, ``Connection`` as the connection needs it, and the blank line."""
        now = int(time.time())
        if now != self._second:
            self._tick(now)
        if close:
            return self._tails[1]
        return self._tails[2] if version == "1.0" else self._tails[0]

    def _tick(self, now: int) -> None:
        self._second = now
        date = f"Date: {format_http_date(now)}\r\n".encode("latin-1")
        a, b, c = (date + line + b"\r\n" for line in _CONNECTION_LINES)
        self._tails = (a, b, c)


DATE_CLOCK = DateClock()


def render(status: int, fields: Iterable[Field], close: bool, version: str = "1.1") -> bytes:
    """A whole head: ``serialize`` and the connection tail."""
    return serialize(status, fields) + DATE_CLOCK.tail(close, version)


# RFC 8187 attr-char: what may stay unencoded in an ext-value (filename*=).
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"


def content_disposition(name: str) -> Field:
    """``Content-Disposition: attachment`` naming ``name`` (RFC 6266, RFC 8187).

    ``filename`` carries an ASCII stand-in (anything outside printable ASCII, quotes and
    backslashes become ``_``) for old clients; ``filename*`` the exact name, UTF-8 and
    percent-encoded. Neither can end the field line: no request byte reaches it raw.
    """
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in name)
    exact = quote(name.encode("utf-8", "surrogateescape"), safe=_ATTR_CHAR_SAFE)
    return (
        "Content-Disposition",
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}",
    )
