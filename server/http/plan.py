"""From a request and a file's facts to an immutable response plan (pure, no I/O).

A plan is the status, the response's own header fields as (name, value) pairs, and the
body as segments: byte strings (part headers, error texts) and windows over the file.
``head.py`` turns status and fields into bytes; the senders in ``server/send`` move the
body. Neither decides anything about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from .conditional import evaluate_preconditions, if_range_allows_range, make_etag
from .head import REASONS, Fields, render
from .httpdate import format_http_date
from .multipart import (
    FileWindow,
    MemberRef,
    Segment,
    multipart_body,
    new_boundary,
    slice_segments,
)
from .ranges import RangeKind, decide_ranges
from .request import Request

ALLOW: Fields = (("Allow", "GET, HEAD, OPTIONS"),)
TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the planner needs to know about a file: taken from one fstat of the open fd."""

    size: int
    mtime_ns: int
    content_type: str
    variant: str = ""  # the bytes' content coding ("br", "gzip", ...); "" is identity
    # Fields of the representation sent (200, 206): Content-Encoding, -Disposition, ...
    representation: Fields = ()
    # Fields of every response about the file (304 and 416 too): Vary.
    always: Fields = ()
    # What caches may do with it: on 200, 206 and 304 (RFC 9111 §4.3.4: a 304 carries
    # what the 200 would), not on errors: Cache-Control.
    caching: Fields = ()
    etag: str = ""  # given, for what is no single file (an archive's snapshot): else made

    def entity_tag(self) -> str:
        return self.etag or make_etag(self.size, self.mtime_ns, self.variant)


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    status: int
    fields: Fields  # the response's own fields; head.render adds Server, Date, Connection
    segments: tuple[Segment, ...]
    body_length: int  # bytes the body will carry (Content-Length, or 0 for HEAD)
    close: bool  # close the connection once the response is out
    uses_file: bool  # some segment is a window over the file (or over archive members)
    members: tuple[MemberRef, ...] = ()  # what MemberWindow segments read (archives)

    def head(self, version: str = "1.1") -> bytes:
        """The head as it goes on the wire to a client speaking HTTP/``version``."""
        return render(self.status, self.fields, self.close, version)

    def wire(self, version: str = "1.1") -> bytes:
        """Head and body of a plan that reads no file, as one write."""
        assert not self.uses_file
        return self.head(version) + b"".join([s for s in self.segments if isinstance(s, bytes)])


def plan_error(
    status: int, request: Request | None, close: bool, extra: Fields = (), detail: str = ""
) -> ResponsePlan:
    """A short plain-text response that names the status (and the server's ``detail``,
    never anything from the request)."""
    text = f"{status} {REASONS[status]}\n" + (f"{detail}\n" if detail else "")
    body = text.encode("utf-8")
    fields = (("Content-Type", TEXT_PLAIN), ("Content-Length", str(len(body))), *extra)
    with_body = request is None or request.method != "HEAD"
    return ResponsePlan(
        status,
        fields,
        (body,) if with_body else (),
        len(body) if with_body else 0,
        close,
        False,
    )


def plan_body(
    status: int, request: Request, close: bool, fields: Fields, body: bytes
) -> ResponsePlan:
    """A response whose body is at hand (a directory listing): ``fields`` name its type."""
    with_body = request.method != "HEAD"
    return ResponsePlan(
        status,
        (*fields, ("Content-Length", str(len(body)))),
        (body,) if with_body else (),
        len(body) if with_body else 0,
        close,
        False,
    )


def plan_no_content(status: int, close: bool, extra: Fields = ()) -> ResponsePlan:
    """A response without a body and without Content-Type (204, 301, 304)."""
    # RFC 9110 §8.6: no Content-Length in a 204, and a 304 does not say the length of
    # what it did not send; a 301 says 0, so that old clients do not wait for a body.
    fields = extra if status in (204, 304) else (*extra, ("Content-Length", "0"))
    return ResponsePlan(status, fields, (), 0, close, False)


def validator_fields(facts: FileFacts) -> Fields:
    """``Last-Modified`` and ``ETag`` of a file, and the fields of every response about it."""
    return (
        ("Last-Modified", format_http_date(facts.mtime_ns // 1_000_000_000)),
        ("ETag", facts.entity_tag()),
        *facts.always,
    )


def whole_file_fields(facts: FileFacts) -> Fields:
    """The fields of a 200 for a whole file (also what the file cache serves)."""
    return (
        ("Content-Type", facts.content_type),
        ("Content-Length", str(facts.size)),
        ("Accept-Ranges", "bytes"),
        *validator_fields(facts),
        *facts.caching,
        *facts.representation,
    )


def plan_file(
    request: Request, facts: FileFacts, close: bool, body: tuple[Segment, ...] | None = None
) -> ResponsePlan:
    """The response to GET or HEAD of a regular file, after preconditions and Range; or of
    ``body``, segments made for the request (an archive), ranges sliced out of it."""
    size = facts.size
    etag = facts.entity_tag()
    last_modified = facts.mtime_ns // 1_000_000_000

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
            fields = (*validator_fields(facts), *facts.caching)
            return ResponsePlan(304, fields, (), 0, close, False)
        if status is not None:
            return plan_error(status, request, close)

    head_only = request.method == "HEAD"

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
            text = b"416 Range Not Satisfiable\n"
            fields = (
                ("Content-Type", TEXT_PLAIN),
                ("Content-Length", str(len(text))),
                ("Content-Range", f"bytes */{size}"),
                ("Accept-Ranges", "bytes"),
                *validator_fields(facts),
            )
            return ResponsePlan(416, fields, (text,), len(text), close, False)
        if decision.kind is RangeKind.PARTIAL:
            ranges = decision.ranges
            if len(ranges) == 1:
                r = ranges[0]
                fields = (
                    ("Content-Type", facts.content_type),
                    ("Content-Length", str(r.length)),
                    ("Content-Range", r.content_range(size)),
                    ("Accept-Ranges", "bytes"),
                    *validator_fields(facts),
                    *facts.caching,
                    *facts.representation,
                )
                if body is None:
                    window: tuple[Segment, ...] = (FileWindow(r.start, r.length),)
                else:
                    window = tuple(slice_segments(body, r.start, r.length))
                return ResponsePlan(206, fields, window, r.length, close, True)
            boundary = new_boundary()
            segments, length = multipart_body(ranges, size, facts.content_type, boundary, body)
            fields = (
                ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
                ("Content-Length", str(length)),
                ("Accept-Ranges", "bytes"),
                *validator_fields(facts),
                *facts.caching,
                *facts.representation,
            )
            return ResponsePlan(206, fields, tuple(segments), length, close, True)

    fields = whole_file_fields(facts)
    if head_only or size == 0:
        return ResponsePlan(200, fields, (), 0, close, False)
    whole = (FileWindow(0, size),) if body is None else body
    return ResponsePlan(200, fields, whole, size, close, True)
