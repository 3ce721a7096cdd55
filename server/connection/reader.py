"""Reading request heads: httptools callbacks as tiny accumulators, and the limits.

``RequestReader.feed`` parses what arrived and reports, without raising: the requests
completed, in order (through ``on_request``), and the status of a request that must be
refused (``Refusal``), after which nothing more is read. Limits are RFC 9112 §3's to
choose; these are the project's contract, each answered with its status and a close.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable

import httptools

from ..http.paths import valid_authority
from ..http.request import KEPT_FIELDS, Request

log = logging.getLogger("zerocopy.protocol")

MAX_TARGET_BYTES = 8 * 1024  # -> 414
MAX_HEADER_BYTES = 16 * 1024  # -> 431 (sum of field lines)
MAX_HEADER_FIELDS = 100  # -> 431
# A head still incomplete after this many bytes is refused even if no single callback
# fired yet (httptools buffers a field line until it ends).
MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024  # -> 431
# A request body (GET with Content-Length) is read and discarded up to this size.
MAX_DISCARDED_BODY = 64 * 1024  # -> 413

# llhttp also parses RTSP and ICE request lines ("GET / RTSP/1.0"): not HTTP (RFC 9112
# §2.3), so refused. Looked for only when such a protocol name is in the bytes at all.
_NOT_HTTP_LINE = re.compile(
    rb"(?m)^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ (?:RTSP|ICE)/[0-9]\.[0-9]\r?$"
)

_REQUEST_LINE = re.compile(rb"[^ ]+ [^ \x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]")
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class _Reject(Exception):
    """Raised in a parser callback: answer ``status`` and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Upgrade(Exception):
    """The request is complete, and what follows is another protocol we do not speak."""


def invalid_method_status(data: bytes, completed_before: int) -> int:
    """501 for a well-formed method we do not know (RFC 9110 §9.1), 400 for garbage (a TLS
    ClientHello sent to the plain port, binary noise).

    The failing request starts after the heads of the ``completed_before`` requests this
    chunk finished first (pipelined GETs carry no bodies), or earlier than the chunk, in
    which case the chunk continues its method token.
    """
    start = 0
    for _ in range(completed_before):
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            break
        start = end + 4
    rest = data[start:].lstrip(b"\r\n")
    token = rest.partition(b" ")[0]
    if not (token and _TCHAR.issuperset(token)):
        return 400
    line, crlf, _ = rest.partition(b"\r\n")
    if crlf and not _REQUEST_LINE.fullmatch(line):
        # Not "method SP request-target SP HTTP-version" (three bare words, say): the
        # request is malformed before its method can be judged (RFC 9112 §3).
        return 400
    return 501


class RequestReader:
    """httptools' callback target for one connection."""

    __slots__ = (
        "_answered_early",
        "_begins",
        "_body_expected",
        "_completes",
        "_head_bytes",
        "_in_head",
        "_on_request",
        "_parser",
        "clock",
        "peer",
        "request",
        "timed",
    )

    def __init__(
        self, on_request: Callable[[Request], None], clock: Callable[[], float] | None
    ) -> None:
        self._parser = httptools.HttpRequestParser(self)
        # HTTP/1.2 and the like reach on_headers_complete, which treats them as 1.1 (RFC
        # 9110 §6.2) and answers other major versions 505; llhttp would call them garbage.
        self._parser.set_dangerous_leniencies(lenient_version=True)
        self._answered_early = False  # answered at its head (Expect): skip its completion
        self._body_expected = False
        self._on_request = on_request
        self.clock = clock  # stamps Request.started when responses are timed
        self.request: Request | None = None  # the head being read, if one has begun
        self._in_head = False
        self._head_bytes = 0  # bytes of the unfinished head received so far
        self._begins = 0
        self._completes = 0
        self.peer = "-"

    def feed(self, data: bytes) -> int | None:
        """Parse ``data``: None, or the status to refuse the connection with (or -1 for an
        upgrade, which ends the requests without a refusal: the ones read are owed)."""
        begins, completes = self._begins, self._completes
        if (b"RTSP/" in data or b"ICE/" in data) and _NOT_HTTP_LINE.search(data):
            return self._refused(400)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return -1
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                return self._refused(cause.status)
            log.error("parser callback failed", exc_info=cause)
            return self._refused(500)
        except httptools.HttpParserInvalidMethodError:
            return self._refused(invalid_method_status(data, self._completes - completes))
        except httptools.HttpParserError as exc:
            log.debug("bad request from %s: %s", self.peer, exc)
            return self._refused(400)
        if self._in_head:
            return self._count_head_bytes(data, began_here=self._begins != begins)
        return None

    def _refused(self, status: int) -> int:
        self._in_head = False
        request = self.request
        if request is not None:
            # The method, if the request line got that far: a refused HEAD gets no body.
            with contextlib.suppress(httptools.HttpParserError):
                request.method = self._parser.get_method().decode("ascii", "replace")
        return status

    def _count_head_bytes(self, data: bytes, began_here: bool) -> int | None:
        """Bound a head that has not ended yet, whatever pace its bytes arrive at.

        httptools holds an unfinished field line without telling us, so we count bytes.
        When the head began in this chunk, it began after the chunk's last CRLFCRLF (an
        unfinished head contains none): exact for pipelined GETs, an upper bound else.
        """
        if began_here:
            end_of_previous = data.rfind(b"\r\n\r\n")
            self._head_bytes = len(data) - (end_of_previous + 4 if end_of_previous >= 0 else 0)
        else:
            self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            return self._refused(431)
        return None

    def abandon(self) -> Request | None:
        """Stop reading the head in progress (it timed out); what had been read of it."""
        request, self.request = self.request, None
        self._in_head = False
        return request

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = Request()
        self._in_head = True
        self._body_expected = False
        self._answered_early = False
        self._begins += 1

    def on_url(self, url: bytes) -> None:
        request = self.request
        assert request is not None
        request.target += url
        if len(request.target) > MAX_TARGET_BYTES:
            raise _Reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        assert request is not None
        request.header_count += 1
        request.header_bytes += len(name) + len(value) + 4
        if request.header_count > MAX_HEADER_FIELDS or request.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431)
        lname = name.lower()
        # RFC 9112 §5.1: trailing whitespace is not part of the value (llhttp keeps it).
        value = value.rstrip(b" \t")
        attr = KEPT_FIELDS.get(lname)
        if attr is not None:
            text = value.decode("latin-1")
            old = getattr(request, attr)
            if old is None:
                setattr(request, attr, text)
            elif attr == "host":
                raise _Reject(400)  # RFC 9112 §3.2: more than one Host is a 400
            else:
                setattr(request, attr, f"{old}, {text}")
        elif lname == b"content-length":
            if not value.isdigit():
                raise _Reject(400)
            digits = value.lstrip(b"0")
            # Compare by length first: Python refuses int() of more than 4300 digits, and
            # llhttp lets any number of leading zeros through.
            if len(digits) > 9 or int(digits or b"0") > MAX_DISCARDED_BODY:
                raise _Reject(413)
            self._body_expected = bool(digits)

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        self._in_head = False
        parser = self._parser
        request.method = parser.get_method().decode("ascii", "replace")
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            # RFC 9110 §6.2: a higher minor version of 1 is answered as 1.1 (the highest we
            # speak); another major version is not ours (505).
            if version.partition(".")[0] != "1":
                raise _Reject(505)
            version = "1.1"
        request.version = version
        host = request.host
        if host is None:
            if version == "1.1":
                raise _Reject(400)  # RFC 9112 §3.2: HTTP/1.1 without Host
        elif not valid_authority(host):
            raise _Reject(400)  # RFC 9112 §3.2: an invalid Host field value
        if request.expect is not None:
            # RFC 9110 §10.1.1: 100-continue is the one expectation there is; 417 else.
            # Empty list elements count for nothing (RFC 9110 §5.6.1.2).
            expected = {e.strip().lower() for e in request.expect.split(",")} - {""}
            if expected - {"100-continue"}:
                raise _Reject(417)
            te = request.transfer_encoding
            if te is not None and te.rsplit(",", 1)[-1].strip().lower() != "chunked":
                # RFC 9112 §6.3: chunked not the final coding: 400 and close. llhttp says so
                # too, but only once the head is parsed, after the early answer below.
                raise _Reject(400)
            if expected and (self._body_expected or te is not None):
                # The client waits for us before it sends the content, and nothing we
                # answer needs it: answer now, and close after (the content may follow).
                request.keep_alive = False
                self._answered_early = True
                self.request = None
                self._in_head = False
                if self.clock is not None:
                    request.started = self.clock()
                self._on_request(request)

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None:
            return  # the content of a request answered at its head (Expect): discarded
        request.body_bytes += len(body)
        if request.body_bytes > MAX_DISCARDED_BODY:
            raise _Reject(413)

    def on_message_complete(self) -> None:
        self._completes += 1
        if self._answered_early:
            self._answered_early = False
            return
        request = self.request
        assert request is not None
        self.request = None
        # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing:
        # answer it, then close.
        request.keep_alive = self._parser.should_keep_alive() and not (
            request.transfer_encoding is not None and request.version == "1.0"
        )
        if self.clock is not None:
            request.started = self.clock()
        self._on_request(request)
