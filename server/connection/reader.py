"""Reading request heads: httptools validates, and the few fields we act on are picked
from each head in one pass; the limits.

``RequestReader.feed`` parses what arrived and reports, without raising: the requests
completed, in order (through ``on_request``), and the status of a request that must be
refused (``Refusal``), after which nothing more is read. Limits are RFC 9112 §3's to
choose; these are the project's contract, each answered with its status and a close.

Two ways to read one head, with one outcome:

* **Whole heads** (every connection starts so): httptools parses without an
  ``on_header`` callback, and once it has accepted a head, ``_take_fields`` takes the
  kept fields out of its bytes by the same per-field rule (``_field``), remembered by
  the exact bytes of the field lines, which the next head usually repeats. A Python call
  per field line is what a browser-like head of 8 fields cost most of all (see README,
  Performance).
* **Field by field** (``_FieldReader``): the callbacks of every field line, with the
  limits checked as the lines arrive and request bodies read and discarded.

A head the first way does not take whole (a body, a repeated Host, near a limit, any
error) is parsed again, from its first byte, the second way, and the connection stays
with it: what a request is answered is decided by the field-by-field code alone, and
``tests/test_reader.py`` checks the two agree on every head they both take.
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

# Whole heads: a head longer than this is read field by field (its limits counted there).
_WHOLE_HEAD_MAX = 8 * 1024
# The kept fields of a head's field lines, by those lines' exact bytes: clients send the
# same lines on every request of a connection (wrk and browsers alike), and many clients
# the same ones. Values are shared, immutable; bounded, and emptied when full.
_FIELD_BLOCKS: dict[bytes, tuple[tuple[str, str], ...]] = {}
_FIELD_BLOCKS_MAX = 256
_METHODS = {m.encode("ascii"): m for m in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE")}


def _method_text(method: bytes) -> str:
    """llhttp's method as the request keeps it (the common ones without decoding)."""
    return _METHODS.get(method) or method.decode("ascii", "replace")


def _not_http(data: bytes) -> int:
    """Where the first RTSP or ICE request line (see _NOT_HTTP_LINE) in ``data`` begins,
    or -1. Field by field, each read is searched; whole, each request line is checked
    when its head is complete (``_take_fields``), and a line that is not HTTP sends the
    head to be read field by field, where this finds it."""
    if b"RTSP/" in data or b"ICE/" in data:
        match = _NOT_HTTP_LINE.search(data)
        if match is not None:
            return match.start()
    return -1


def _parser_for(reader: RequestReader) -> httptools.HttpRequestParser:
    """httptools' parser calling back ``reader`` (the callbacks its class defines)."""
    parser = httptools.HttpRequestParser(reader)
    # HTTP/1.2 and the like reach on_headers_complete, which treats them as 1.1 (RFC 9110
    # §6.2) and answers other major versions 505; llhttp would call them garbage.
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


_REQUEST_LINE = re.compile(rb"[^ ]+ [^ \x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]")
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class _FieldByField(Exception):
    """Raised in a whole-head callback: read this head again, field by field."""


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


_READER_SLOTS = (
    "_answered_early",
    "_begins",
    "_block",
    "_body_expected",
    "_buf",
    "_closed",
    "_completes",
    "_head_bytes",
    "_in_head",
    "_kept",
    "_next",
    "_on_request",
    "_parser",
    "_pos",
    "_valid_host",
    "clock",
    "peer",
    "request",
    "timed",
)


class RequestReader:
    """httptools' callback target for one connection: whole heads (see the module)."""

    __slots__ = _READER_SLOTS

    def __init__(
        self, on_request: Callable[[Request], None], clock: Callable[[], float] | None
    ) -> None:
        self._parser = _parser_for(self)
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
        # Where the heads are: the bytes of this read (after what is carried of a head
        # begun in an earlier read), where the message being read begins in them, and
        # where the one whose head is complete ends.
        self._buf = b""
        self._pos = 0
        self._next = 0
        self._valid_host = ""  # the last Host value found valid on this connection
        self._closed = False  # the last message completed closes the connection
        # The field block of this connection's last whole head, and its kept fields.
        self._block = b"\xff"  # matches no head
        self._kept: tuple[tuple[str, str], ...] = ()

    def feed(self, data: bytes) -> int | None:
        """Parse ``data``: None, or the status to refuse the connection with (or -1 for an
        upgrade, which ends the requests without a refusal: the ones read are owed)."""
        self._buf = data
        self._pos = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return -1
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(exc, httptools.HttpParserCallbackError) and not isinstance(
                cause, (_Reject, _FieldByField)
            ):
                log.error("parser callback failed", exc_info=cause)
                return self._refused(500)
            failed = True
        else:
            failed = False
        if failed:
            if self._closed:
                # llhttp reads nothing after a message that closes the connection (a
                # fresh parser would): refused as the field-by-field reader refuses it.
                return self._refused(400)
            # Whatever is wrong with this head, the field-by-field reader tells.
            return self._field_by_field(data[self._pos :])
        if self._in_head:
            # A head that does not end in the read it began in (a slow client, a head
            # longer than a segment): read field by field, its limits checked as its
            # lines arrive, from its first byte on.
            return self._field_by_field(data[self._pos :])
        return None

    def _field_by_field(self, rest: bytes) -> int | None:
        """From the message that begins ``rest`` on, read field by field."""
        self.__class__ = _FieldReader
        self.request = None
        self._in_head = False
        self._parser = _parser_for(self)  # now with on_header and on_body
        return self.feed(rest)

    def _parse(self, data: bytes) -> int | None:
        """Field by field: httptools calls back for every line, and the limits apply as
        they arrive."""
        begins, completes = self._begins, self._completes
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
                request.method = _method_text(self._parser.get_method())
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

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        self._in_head = False
        method = self._parser.get_method()
        request.method = _method_text(method)
        version = self._take_fields(request, method) or self._parser.get_http_version()
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
        elif host != self._valid_host:
            if not valid_authority(host):
                raise _Reject(400)  # RFC 9112 §3.2: an invalid Host field value
            self._valid_host = host
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

    def _take_fields(self, request: Request, method: bytes) -> str | None:
        """Take the kept fields of the head llhttp has just accepted (its lines are
        "name:" OWS value CRLF, no bare CR or LF), or raise _FieldByField for a head to
        read field by field: a body follows, or a field line is refused.

        Returns the request line's HTTP version when it is 1.1 or 1.0 (llhttp's, read
        without formatting it), else None."""
        buf = self._buf
        start = self._pos
        # llhttp skips empty lines before a request line (RFC 9112 §2.2).
        while start < len(buf) and buf[start] in b"\r\n":
            start += 1
        line_end = buf.find(b"\r\n", start)
        if (
            line_end < 0
            or not buf.startswith(method, start)
            or not buf.startswith(b" HTTP/", line_end - 9)
        ):
            # Not where the head was expected (never), or a protocol llhttp takes and
            # HTTP does not (RTSP, ICE): the field-by-field reader refuses it.
            raise _FieldByField
        block = self._block
        if not buf.startswith(block, line_end):
            end = buf.find(b"\r\n\r\n", line_end)
            if end < 0 or end - start > _WHOLE_HEAD_MAX:
                raise _FieldByField
            block = bytes(buf[line_end : end + 4])  # CRLF, the field lines, CRLF CRLF
            kept = _FIELD_BLOCKS.get(block)
            if kept is None:
                kept = self._kept_of(request, block)
            self._block, self._kept = block, kept
        self._next = line_end + len(block)
        for attr, value in self._kept:
            setattr(request, attr, value)
        version = buf[line_end - 3 : line_end]
        return "1.1" if version == b"1.1" else "1.0" if version == b"1.0" else None

    def _kept_of(self, request: Request, block: bytes) -> tuple[tuple[str, str], ...]:
        """The kept fields of a field block not seen lately, taken by the one rule."""
        for line in block[2:-4].split(b"\r\n") if len(block) > 4 else ():
            name, _, value = line.partition(b":")
            lname = name.lower()
            if lname == b"content-length" or lname == b"transfer-encoding":
                raise _FieldByField  # a body follows
            self._field(request, lname, value.lstrip(b" \t"))  # as llhttp hands it
        kept = tuple(
            (attr, value)
            for attr in KEPT_FIELDS.values()
            if (value := getattr(request, attr)) is not None
        )
        if len(_FIELD_BLOCKS) >= _FIELD_BLOCKS_MAX:
            _FIELD_BLOCKS.clear()
        _FIELD_BLOCKS[block] = kept
        return kept

    def _field(self, request: Request, lname: bytes, value: bytes) -> None:
        """One field line (name lower-cased, value without its leading OWS, as llhttp
        hands it): the limits, then kept if the server acts on it. The one rule for both
        ways of reading a head."""
        request.header_count += 1
        request.header_bytes += len(lname) + len(value) + 4
        if request.header_count > MAX_HEADER_FIELDS or request.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431)
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

    def on_message_complete(self) -> None:
        self._pos = self._next
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
        self._closed = not request.keep_alive
        if self.clock is not None:
            request.started = self.clock()
        self._on_request(request)


class _FieldReader(RequestReader):
    """The field-by-field reader: a connection's, from the first head not taken whole."""

    __slots__ = ()

    def feed(self, data: bytes) -> int | None:
        line = _not_http(data)
        if line < 0:
            return self._parse(data)
        # The requests before that line are read (and answered); from it on, refused.
        status = self._parse(data[:line]) if line else None
        return status if status is not None else self._refused(400)

    def _take_fields(self, request: Request, method: bytes) -> str | None:
        return None  # on_header has taken them

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.request is not None
        self._field(self.request, name.lower(), value)

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None:
            return  # the content of a request answered at its head (Expect): discarded
        request.body_bytes += len(body)
        if request.body_bytes > MAX_DISCARDED_BODY:
            raise _Reject(413)
