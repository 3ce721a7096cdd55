"""Validators and conditional requests (RFC 9110 §8.8, §13).

``evaluate_preconditions`` applies the four precondition fields in the order of RFC 9110
§13.2.2; ``if_range_allows_range`` decides whether a Range applies (§13.1.5). Each field
has one small function; none of them does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

from .httpdate import parse_http_date

STATUS_NOT_MODIFIED = 304
STATUS_PRECONDITION_FAILED = 412


def make_etag(size: int, mtime_ns: int, variant: str = "") -> str:
    """A strong ETag from size and mtime in nanoseconds (and the content coding).

    Never the inode or the host: replicas serving copies of a tree with the same mtimes
    must agree, or a download resumed against another replica restarts from zero. A
    precompressed variant gets a tag of its own (RFC 9110 §8.8.3.3): its bytes differ.
    """
    if variant:
        return f'"{size:x}-{mtime_ns:x}-{variant}"'
    return f'"{size:x}-{mtime_ns:x}"'


def _entity_tags(value: str) -> Iterator[tuple[bool, str]]:
    """Yield (weak, opaque-tag-with-quotes) for each entity-tag of a list (RFC 9110 §8.8.3).

    Scanning stops at the first malformed element: what came before still counts, nothing
    after it does (the behaviour of Go's scanETag). Linear in the length of the value.
    """
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t,":
            i += 1
            continue
        weak = False
        if value.startswith("W/", i):
            weak = True
            i += 2
        if i >= n or value[i] != '"':
            return
        end = value.find('"', i + 1)
        if end < 0:
            return
        yield weak, value[i : end + 1]
        i = end + 1


def _is_star(value: str) -> bool:
    return value.strip(" \t") == "*"


def if_match_passes(value: str, etag: str) -> bool:
    """If-Match uses the strong comparison (RFC 9110 §13.1.1)."""
    if _is_star(value):
        return True
    return any(not weak and tag == etag for weak, tag in _entity_tags(value))


def if_none_match_matches(value: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2)."""
    if _is_star(value):
        return True
    # Our own tags are strong, so the weak comparison only has to drop the W/ prefix.
    return any(tag == etag for _, tag in _entity_tags(value))


def if_unmodified_since_passes(value: str, last_modified: int) -> bool:
    """False only for a valid date earlier than Last-Modified (RFC 9110 §13.1.4)."""
    date = parse_http_date(value)
    return date is None or last_modified <= date


def if_modified_since_not_modified(value: str, last_modified: int) -> bool:
    """True when a valid date shows the representation unchanged (RFC 9110 §13.1.3)."""
    date = parse_http_date(value)
    return date is not None and last_modified <= date


def evaluate_preconditions(
    method: str,
    etag: str,
    last_modified: int,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
) -> int | None:
    """304, 412, or None to go on, following RFC 9110 §13.2.2 step by step.

    ``last_modified`` is the Last-Modified value in whole seconds, as sent.
    """
    # Step 1 and 2: If-Match, or when it is absent, If-Unmodified-Since.
    if if_match is not None:
        if not if_match_passes(if_match, etag):
            return STATUS_PRECONDITION_FAILED
    elif if_unmodified_since is not None and not if_unmodified_since_passes(
        if_unmodified_since, last_modified
    ):
        return STATUS_PRECONDITION_FAILED
    # Step 3 and 4: If-None-Match, or when it is absent, If-Modified-Since (GET/HEAD only).
    safe = method in ("GET", "HEAD")
    if if_none_match is not None:
        if if_none_match_matches(if_none_match, etag):
            return STATUS_NOT_MODIFIED if safe else STATUS_PRECONDITION_FAILED
    elif (
        safe
        and if_modified_since is not None
        and if_modified_since_not_modified(if_modified_since, last_modified)
    ):
        return STATUS_NOT_MODIFIED
    return None


def if_range_allows_range(value: str, etag: str, last_modified: int) -> bool:
    """Whether Range applies given If-Range (RFC 9110 §13.1.5).

    An entity-tag must match strongly (a weak tag never does); a date must equal
    Last-Modified exactly. Anything else, malformed values included, means "send it all".
    """
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        # Exactly one strong entity-tag, nothing after it: '"tag"junk' is no validator,
        # so the condition is false (the differential fuzzer against nginx found it taken
        # as a match).
        return value == etag
    date = parse_http_date(value)
    return date is not None and date == last_modified
