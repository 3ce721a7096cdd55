"""From a request and a file's facts to an immutable response plan (pure, no I/O).

A plan is the status, the complete response head as bytes, and the body as segments:
byte strings (part headers, error texts) and windows over the file. The senders in
``send.py`` execute plans; they never decide anything about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from .conditional import evaluate_preconditions, if_range_allows_range, make_etag
from .headers import DATE_CLOCK, REASONS, SERVER_LINE, STATUS_LINES
from .httpdate import format_http_date
from .multipart import FileWindow, Segment, multipart_body, new_boundary
from .ranges import RangeKind, decide_ranges
from .request import Request

ALLOW_LINE = "Allow: GET, HEAD\r\n"


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the planner needs to know about a file: taken from one fstat of the open fd."""

    size: int
    mtime_ns: int
    content_type: str
    variant: str = ""  # the bytes' content coding ("br", "gzip", ...); "" is identity
    extra: str = ""  # representation fields for 200/206: Content-Encoding, -Disposition, ...
    vary: str = ""  # a Vary field line, for every response about the file (304 too)


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    status: int
    head: bytes
    segments: tuple[Segment, ...]
    body_length: int  # bytes the body will carry (Content-Length, or 0 for HEAD)
    close: bool  # close the connection once the response is out
    uses_file: bool  # some segment is a window over the file

    @property
    def file_bytes(self) -> int:
        return sum(s.length for s in self.segments if isinstance(s, FileWindow))


def connection_line(request: Request, close: bool) -> str:
    """``Connection`` for the response: close when closing, keep-alive for HTTP/1.0."""
    if close:
        return "Connection: close\r\n"
    if request.version == "1.0":
        return "Connection: keep-alive\r\n"
    return ""


def _head(status: int, lines: str, connection: str) -> bytes:
    return (
        STATUS_LINES[status] + DATE_CLOCK.line() + SERVER_LINE + lines + connection + "\r\n"
    ).encode("latin-1")


def plan_error(status: int, request: Request | None, close: bool, extra: str = "") -> ResponsePlan:
    """A short plain-text response that names the status and echoes nothing."""
    body = f"{status} {REASONS[status]}\n".encode("ascii")
    lines = f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n{extra}"
    if request is None:
        connection = "Connection: close\r\n" if close else ""
    else:
        connection = connection_line(request, close)
    with_body = request is None or request.method != "HEAD"
    return ResponsePlan(
        status,
        _head(status, lines, connection),
        (body,) if with_body else (),
        len(body) if with_body else 0,
        close,
        False,
    )


def plan_body(status: int, request: Request, close: bool, fields: str, body: bytes) -> ResponsePlan:
    """A response whose body is at hand (a directory listing): ``fields`` name its type."""
    lines = f"{fields}Content-Length: {len(body)}\r\n"
    with_body = request.method != "HEAD"
    return ResponsePlan(
        status,
        _head(status, lines, connection_line(request, close)),
        (body,) if with_body else (),
        len(body) if with_body else 0,
        close,
        False,
    )


def plan_no_content(status: int, request: Request, close: bool, extra: str = "") -> ResponsePlan:
    """A response without a body and without Content-Type (204, 301, 304)."""
    lines = extra
    if status != 304:
        # RFC 9110 §8.6: a 304 does not say Content-Length of what it did not send.
        lines += "Content-Length: 0\r\n"
    return ResponsePlan(
        status, _head(status, lines, connection_line(request, close)), (), 0, close, False
    )


def validator_fields(facts: FileFacts) -> str:
    """``Last-Modified`` and ``ETag`` field lines for a file."""
    last_modified = facts.mtime_ns // 1_000_000_000
    etag = make_etag(facts.size, facts.mtime_ns, facts.variant)
    return f"Last-Modified: {format_http_date(last_modified)}\r\nETag: {etag}\r\n{facts.vary}"


def whole_file_fields(facts: FileFacts, common: str | None = None) -> str:
    """The field lines of a 200 for a whole file, after Date and Server."""
    if common is None:
        common = f"Accept-Ranges: bytes\r\n{validator_fields(facts)}"
    return (
        f"Content-Type: {facts.content_type}\r\nContent-Length: {facts.size}\r\n"
        f"{common}{facts.extra}"
    )


def plan_file(request: Request, facts: FileFacts, close: bool) -> ResponsePlan:
    """The response to GET or HEAD of a regular file, after preconditions and Range."""
    size = facts.size
    etag = make_etag(size, facts.mtime_ns, facts.variant)
    last_modified = facts.mtime_ns // 1_000_000_000
    validators = validator_fields(facts)
    connection = connection_line(request, close)

    # RFC 9110 §13.2.2: preconditions first, then Range (step 5).
    if (
        request.if_match is not None
        or request.if_none_match is not None
        or request.if_modified_since is not None
        or request.if_unmodified_since is not None
    ):
        status = evaluate_preconditions(
            request.method,
            etag,
            last_modified,
            request.if_match,
            request.if_none_match,
            request.if_modified_since,
            request.if_unmodified_since,
        )
        if status == 304:
            return ResponsePlan(304, _head(304, validators, connection), (), 0, close, False)
        if status is not None:
            return plan_error(status, request, close)

    head_only = request.method == "HEAD"
    common = f"Accept-Ranges: bytes\r\n{validators}"

    # RFC 9110 §14.2: Range is defined for GET only; HEAD gets the 200 head.
    if (
        request.range is not None
        and not head_only
        and (
            request.if_range is None or if_range_allows_range(request.if_range, etag, last_modified)
        )
    ):
        decision = decide_ranges(request.range, size)
        if decision.kind is RangeKind.UNSATISFIABLE:
            body = b"416 Range Not Satisfiable\n"
            lines = (
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nContent-Range: bytes */{size}\r\n{common}"
            )
            head = _head(416, lines, connection)
            return ResponsePlan(416, head, (body,), len(body), close, False)
        if decision.kind is RangeKind.PARTIAL:
            ranges = decision.ranges
            if len(ranges) == 1:
                r = ranges[0]
                lines = (
                    f"Content-Type: {facts.content_type}\r\nContent-Length: {r.length}\r\n"
                    f"Content-Range: {r.content_range(size)}\r\n{common}{facts.extra}"
                )
                return ResponsePlan(
                    206,
                    _head(206, lines, connection),
                    (FileWindow(r.start, r.length),),
                    r.length,
                    close,
                    True,
                )
            boundary = new_boundary()
            segments, length = multipart_body(ranges, size, facts.content_type, boundary)
            lines = (
                f"Content-Type: multipart/byteranges; boundary={boundary}\r\n"
                f"Content-Length: {length}\r\n{common}{facts.extra}"
            )
            return ResponsePlan(
                206, _head(206, lines, connection), tuple(segments), length, close, True
            )

    lines = whole_file_fields(facts, common)
    if head_only or size == 0:
        return ResponsePlan(200, _head(200, lines, connection), (), 0, close, False)
    return ResponsePlan(
        200, _head(200, lines, connection), (FileWindow(0, size),), size, close, True
    )
