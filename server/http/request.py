"""The parsed request head, as the protocol hands it to the planner."""

from __future__ import annotations


class Request:
    """One request's head: method, target, version and the fields the server acts on.

    Fields the server never reads are not kept (parser callbacks stay tiny accumulators).
    """

    __slots__ = (
        "accept",
        "accept_encoding",
        "body_bytes",
        "forwarded",
        "header_bytes",
        "header_count",
        "host",
        "if_match",
        "if_modified_since",
        "if_none_match",
        "if_range",
        "if_unmodified_since",
        "keep_alive",
        "method",
        "range",
        "referer",
        "started",
        "target",
        "user_agent",
        "version",
        "want_repr_digest",
        "x_forwarded_for",
        "x_forwarded_host",
        "x_forwarded_proto",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.target = b""
        self.version = "1.1"
        self.keep_alive = True
        self.host: str | None = None
        self.range: str | None = None
        self.if_match: str | None = None
        self.if_none_match: str | None = None
        self.if_modified_since: str | None = None
        self.if_unmodified_since: str | None = None
        self.if_range: str | None = None
        self.user_agent: str | None = None
        self.referer: str | None = None
        self.forwarded: str | None = None
        self.accept: str | None = None
        self.accept_encoding: str | None = None
        self.want_repr_digest: str | None = None
        self.x_forwarded_for: str | None = None
        self.x_forwarded_proto: str | None = None
        self.x_forwarded_host: str | None = None
        self.header_bytes = 0
        self.header_count = 0
        self.body_bytes = 0
        self.started = 0.0  # loop time when the request was complete


# Request fields kept, by lower-cased name, mapped to the Request attribute that holds them.
# A repeated field is joined with ", " (RFC 9110 §5.3), except Host, which must be single.
KEPT_FIELDS: dict[bytes, str] = {
    b"host": "host",
    b"range": "range",
    b"if-match": "if_match",
    b"if-none-match": "if_none_match",
    b"if-modified-since": "if_modified_since",
    b"if-unmodified-since": "if_unmodified_since",
    b"if-range": "if_range",
    b"user-agent": "user_agent",
    b"referer": "referer",
    b"forwarded": "forwarded",
    b"accept": "accept",
    b"accept-encoding": "accept_encoding",
    b"want-repr-digest": "want_repr_digest",
    b"x-forwarded-for": "x_forwarded_for",
    b"x-forwarded-proto": "x_forwarded_proto",
    b"x-forwarded-host": "x_forwarded_host",
}
