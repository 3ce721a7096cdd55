"""``--cors``: letting pages of other origins read downloads, ranges included (Fetch
standard, "CORS protocol").

A browser sends ``Origin`` with a cross-origin ``fetch()``; it hands the response to the
page only if ``Access-Control-Allow-Origin`` names that origin (or is ``*``), and shows
the page only the fields ``Access-Control-Expose-Headers`` lists (``Content-Range``,
``ETag``, ... are not "safelisted"). A ``Range`` header makes the request non-simple, so
the browser first asks with a preflight ``OPTIONS`` carrying
``Access-Control-Request-Method`` (and ``-Headers``), answered here. An origin not
allowed gets no CORS field at all: the browser then refuses the page the response.
"""

from __future__ import annotations

from .head import Fields

ALLOWED_METHODS = "GET, HEAD"
ALLOWED_HEADERS = "Range, If-Range, If-None-Match, If-Modified-Since, Want-Repr-Digest"
EXPOSED_HEADERS = (
    "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, "
    "Content-Disposition, Repr-Digest"
)
PREFLIGHT_MAX_AGE = 86400  # seconds a browser may reuse a preflight's answer


def parse_origins(spec: str) -> tuple[str, ...]:
    """``*`` or a comma-separated list of ``scheme://host[:port]``. Raises ValueError."""
    items = tuple(item.strip().rstrip("/") for item in spec.split(",") if item.strip())
    if not items:
        raise ValueError("no origin given")
    if "*" in items:
        if len(items) > 1:
            raise ValueError("'*' allows every origin: list no others with it")
        return ("*",)
    for origin in items:
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        if any(c in origin for c in " \t\r\n,"):
            raise ValueError(f"not an origin: {origin!r}")
    return items


class CorsPolicy:
    """Which origins may read, and the fields that say so."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = origins == ("*",)
        self.origins = frozenset(o.lower() for o in origins)
        # Every response about a file names Origin in Vary when the answer depends on it
        # (not with "*"), so that shared caches keep the variants apart.
        self.vary: Fields = () if self.any else (("Vary", "Origin"),)

    def allows(self, origin: str | None) -> bool:
        return origin is not None and (self.any or origin.strip().lower() in self.origins)

    def response_fields(self, origin: str | None) -> Fields:
        """For a response to a request from ``origin``: nothing unless it is allowed."""
        if not self.allows(origin):
            return ()
        assert origin is not None
        return (
            ("Access-Control-Allow-Origin", "*" if self.any else origin.strip()),
            ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
        )

    def preflight_fields(self, origin: str | None, method: str | None) -> Fields:
        """For an OPTIONS preflight: the grant, or nothing (the browser then refuses)."""
        if not self.allows(origin) or method is None:
            return ()
        if method.strip().upper() not in ("GET", "HEAD"):
            return ()
        assert origin is not None
        return (
            ("Access-Control-Allow-Origin", "*" if self.any else origin.strip()),
            ("Access-Control-Allow-Methods", ALLOWED_METHODS),
            ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
            *self.vary,
        )
