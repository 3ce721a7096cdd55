"""Response head formatting: status lines, field lines, the Date clock.

Everything that does not change per request is bytes computed once; the per-request part
is a join of a few short strings. Nothing from the request reaches a field value raw: the
only request-derived values are Location (``paths.directory_redirect``, percent-encoded)
and Content-Disposition (``content_disposition`` below).
"""

from __future__ import annotations

import time
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
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n" for code, reason in REASONS.items()}

# Field lines every response carries after Date.
SERVER_LINE = f"Server: {SERVER_NAME}\r\n"


class DateClock:
    """The ``Date:`` field line, formatted at most once per second (RFC 9110 §6.6.1)."""

    __slots__ = ("_bytes", "_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = ""
        self._bytes = b""

    def line(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._tick(now)
        return self._line

    def line_bytes(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._tick(now)
        return self._bytes

    def _tick(self, now: int) -> None:
        self._second = now
        self._line = f"Date: {format_http_date(now)}\r\n"
        self._bytes = self._line.encode("latin-1")


DATE_CLOCK = DateClock()


# RFC 8187 attr-char: what may stay unencoded in an ext-value (filename*=).
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"


def content_disposition(name: str) -> str:
    """``Content-Disposition: attachment`` naming ``name`` (RFC 6266, RFC 8187).

    ``filename`` carries an ASCII stand-in (anything outside printable ASCII, quotes and
    backslashes become ``_``) for old clients; ``filename*`` the exact name, UTF-8 and
    percent-encoded. Neither can end the field line: no request byte reaches it raw.
    """
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in name)
    exact = quote(name.encode("utf-8", "surrogateescape"), safe=_ATTR_CHAR_SAFE)
    return f"Content-Disposition: attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}\r\n"
