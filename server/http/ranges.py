"""Range header parsing and range policy (RFC 9110 §14).

Two layers, in the manner of Go's net/http/fs.go:

* ``parse_byte_ranges(value, size)`` is the grammar: it turns a ``Range`` field value into
  the satisfiable ranges clamped to a representation of ``size`` bytes, or says the value is
  not a valid ``bytes`` range set.
* ``decide_ranges(value, size)`` is the policy on top: coalescing, the count cap and the
  "asks for more than the whole file" rule, producing the one decision the response
  planner needs.

Both run in time linear in the length of the value (plus a sort of the parsed ranges); there
is no regular expression to backtrack and no quadratic merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# A request whose ranges, after coalescing, still number more than this is answered with the
# whole file: many tiny parts cost more in part headers and syscalls than they save.
MAX_RANGES = 100

# Numbers with more significant digits than this saturate to _HUGE.
_MAX_DIGITS = 18
_HUGE = 10**19


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A half-open window ``[start, stop)`` of a representation."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value for this range (RFC 9110 §14.4)."""
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class RangeKind(Enum):
    FULL = "full"  # ignore Range: answer 200 with the whole representation
    UNSATISFIABLE = "unsatisfiable"  # answer 416 with Content-Range: bytes */size
    PARTIAL = "partial"  # answer 206 with the ranges (one: single part; more: multipart)


@dataclass(frozen=True, slots=True)
class RangeDecision:
    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


DECISION_FULL = RangeDecision(RangeKind.FULL)
DECISION_UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)


def _digits(text: str) -> str | None:
    """A non-empty run of ASCII digits without its leading zeros, or None."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    return text.lstrip("0") or "0"


def _value(digits: str) -> int:
    """The number, saturated: no file is 10**18 bytes long, and Python refuses to convert
    very long digit strings."""
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def _less(a: str, b: str) -> bool:
    """a < b for digit strings without leading zeros, at any length."""
    return (len(a), a) < (len(b), b)


def parse_byte_ranges(value: str, size: int) -> list[ByteRange] | None:
    """Parse a ``Range`` value against ``size`` bytes (RFC 9110 §14.1.2, §14.1.1).

    Returns None when the value is not a syntactically valid ``bytes`` range set (the
    caller then ignores the header), otherwise the satisfiable ranges in request order,
    clamped to the representation. An empty list means nothing was satisfiable.
    """
    unit, eq, spec = value.partition("=")
    # The range unit is case-insensitive (RFC 9110 §14.1); "bytes" is the only one we know.
    if not eq or unit.strip().lower() != "bytes":
        return None
    result: list[ByteRange] = []
    seen_spec = False
    for raw in spec.split(","):
        item = raw.strip(" \t")
        if not item:
            # The list rule allows empty elements (RFC 9110 §5.6.1.2).
            continue
        seen_spec = True
        first, dash, last = item.partition("-")
        if not dash:
            return None
        if first == "":
            # suffix-range = "-" suffix-length (RFC 9110 §14.1.1)
            digits = _digits(last)
            if digits is None:
                return None
            suffix = _value(digits)
            if suffix == 0 or size == 0:
                continue  # unsatisfiable, but syntactically fine
            start = max(size - suffix, 0)
            result.append(ByteRange(start, size))
            continue
        first_digits = _digits(first)
        if first_digits is None:
            return None
        start = _value(first_digits)
        if last == "":
            stop = size
        else:
            last_digits = _digits(last)
            if last_digits is None:
                return None
            if _less(last_digits, first_digits):
                # "A byte-range-spec is invalid if the last-pos value is present and less
                # than the first-pos" (RFC 9110 §14.1.1).
                return None
            stop = min(_value(last_digits) + 1, size)
        if start >= size:
            continue  # unsatisfiable: first-pos at or beyond the end (RFC 9110 §14.1.1)
        result.append(ByteRange(start, stop))
    if not seen_spec:
        return None
    return result


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping and adjacent ranges, keeping request order otherwise.

    RFC 9110 §14.6: parts SHOULD come in the order the ranges were asked for, "excluding
    those ranges that were deemed unsatisfiable or that were coalesced into other ranges";
    a merged range takes the place of the earliest range it absorbed.
    """
    if len(ranges) < 2:
        return list(ranges)
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].start)
    merged: list[tuple[int, int, int]] = []  # (first request index, start, stop)
    for i in order:
        r = ranges[i]
        if merged and r.start <= merged[-1][2]:
            first, start, stop = merged[-1]
            merged[-1] = (min(first, i), start, max(stop, r.stop))
        else:
            merged.append((i, r.start, r.stop))
    merged.sort()
    return [ByteRange(start, stop) for _, start, stop in merged]


def decide_ranges(value: str, size: int) -> RangeDecision:
    """What a GET with ``Range: value`` on ``size`` bytes gets: 200, 206 or 416."""
    if size == 0:
        # RFC 9110 §14.2 lets a server ignore Range; for an empty file every range is
        # unsatisfiable and clients (curl -C -, download managers) hang or loop on 416.
        return DECISION_FULL
    parsed = parse_byte_ranges(value, size)
    if parsed is None:
        return DECISION_FULL
    if not parsed:
        return DECISION_UNSATISFIABLE
    # Asking for more bytes than the file holds is an attack or a broken client (the
    # overlapping-ranges amplification of CVE-2011-3192): send the file once instead.
    if sum(r.length for r in parsed) > size:
        return DECISION_FULL
    ranges = coalesce(parsed)
    if len(ranges) > MAX_RANGES:
        return DECISION_FULL
    return RangeDecision(RangeKind.PARTIAL, tuple(ranges))
