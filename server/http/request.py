"""The parsed request head, as the connection hands it to the planner.

One table: every field of ``Request`` is declared once, below; the parser's table of kept
header fields (``KEPT_FIELDS``) is derived from the fields marked ``_header()``, the
header name being the attribute's name with ``-`` for ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

_HEADER = "header"


def _header() -> str | None:
    """A request header field the server acts on (None when absent; a repeated one is
    joined with ", " as RFC 9110 §5.3 allows, except Host, which must be single)."""
    return field(default=None, metadata={_HEADER: True})


@dataclass(slots=True, eq=False)
class Request:
    """One request's head: method, target, version and the fields the server acts on.

    Fields the server never reads are not kept (parser callbacks stay tiny accumulators).
    """

    method: str = "GET"  # "" for a request refused before its method was known
    target: bytes = b""
    version: str = "1.1"
    keep_alive: bool = True
    header_bytes: int = 0
    header_count: int = 0
    body_bytes: int = 0
    started: float = 0.0  # loop time when the request was complete
    host: str | None = _header()
    range: str | None = _header()
    if_match: str | None = _header()
    if_none_match: str | None = _header()
    if_modified_since: str | None = _header()
    if_unmodified_since: str | None = _header()
    if_range: str | None = _header()
    user_agent: str | None = _header()
    referer: str | None = _header()
    forwarded: str | None = _header()
    accept: str | None = _header()
    accept_encoding: str | None = _header()
    want_repr_digest: str | None = _header()
    expect: str | None = _header()
    want_digest: str | None = _header()
    origin: str | None = _header()
    access_control_request_method: str | None = _header()
    transfer_encoding: str | None = _header()
    x_forwarded_for: str | None = _header()


# Request fields kept, by lower-cased name, mapped to the Request attribute that holds them.
KEPT_FIELDS: dict[bytes, str] = {
    f.name.replace("_", "-").encode("ascii"): f.name
    for f in fields(Request)
    if f.metadata.get(_HEADER)
}
