"""Property tests: the range and path parsers never raise unexpectedly and keep invariants."""

from __future__ import annotations

import itertools
import os.path

from hypothesis import given, settings
from hypothesis import strategies as st

from server.http.paths import TargetError, parse_target
from server.http.ranges import MAX_RANGES, RangeKind, decide_ranges, parse_byte_ranges

# No example database: the run leaves nothing behind in the checkout.
SETTINGS = settings(max_examples=500, deadline=None, database=None)
ROOT = "/srv/root"

# --- Range values: random text plus text shaped like the grammar, so parsing gets deep. ---

_numbers = st.one_of(
    st.integers(0, 2**41).map(str),
    st.integers(0, 200).map(str),
    st.text("0123456789", min_size=15, max_size=60),
    st.sampled_from(["", "+1", "\u00b2", "\u0669", " 1", "1 ", "-1", "0x1"]),
)
_spec = st.one_of(
    st.tuples(_numbers, _numbers).map(lambda t: f"{t[0]}-{t[1]}"),
    _numbers.map(lambda n: f"{n}-"),
    _numbers.map(lambda n: f"-{n}"),
    st.text(max_size=8),
)
_sep = st.sampled_from([",", ", ", " ,", ",,", ",\t", " , "])
_range_like = st.builds(
    lambda unit, eq, specs, seps: (
        unit + eq + "".join(s + seps[i % len(seps)] for i, s in enumerate(specs)).rstrip(",\t ")
    ),
    st.sampled_from(["bytes", "BYTES", "Bytes", " bytes", "items", "", "byte"]),
    st.sampled_from(["=", "", "=="]),
    st.lists(_spec, max_size=12),
    st.lists(_sep, min_size=1, max_size=3),
)
range_values = st.one_of(st.text(max_size=200), _range_like)
sizes = st.one_of(st.integers(0, 2**40), st.integers(0, 300))


@SETTINGS
@given(value=range_values, size=sizes)
def test_parse_byte_ranges_never_raises_and_returns_windows_inside_the_file(value, size):
    parsed = parse_byte_ranges(value, size)
    if parsed is None:
        return
    for r in parsed:
        assert 0 <= r.start < r.stop <= size


@SETTINGS
@given(value=range_values, size=sizes)
def test_decide_ranges_never_raises_and_partial_ranges_are_disjoint_and_inside(value, size):
    decision = decide_ranges(value, size)
    if decision.kind is not RangeKind.PARTIAL:
        assert decision.ranges == ()
        return
    assert size > 0
    assert 1 <= len(decision.ranges) <= MAX_RANGES
    for r in decision.ranges:
        assert 0 <= r.start < r.stop <= size
    ordered = sorted(decision.ranges, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        # Non-overlapping and non-adjacent: a gap of at least one byte between parts.
        assert a.stop < b.start
    assert sum(r.length for r in decision.ranges) <= size


# --- Request targets: arbitrary bytes after "/", plus bytes built from the risky pieces. ---

_pieces = st.sampled_from(
    [
        b"/",
        b"//",
        b"\\",
        b".",
        b"..",
        b"%2e",
        b"%2E",
        b"%2f",
        b"%2F",
        b"%5c",
        b"%5C",
        b"%00",
        b"%25",
        b"%c0%ae",
        b"%",
        b"%z",
        b"?",
        b"#",
        b"a",
        b".env",
        b"\xff",
        b"%e2%80%ae",
    ]
)
targets = st.one_of(
    st.binary(max_size=200).map(lambda b: b"/" + b),
    st.lists(st.one_of(_pieces, st.binary(max_size=3)), max_size=30).map(
        lambda parts: b"/" + b"".join(parts)
    ),
)


@SETTINGS
@given(target=targets)
def test_parse_target_raises_only_target_error_and_segments_stay_under_root(target):
    try:
        path = parse_target(target)
    except TargetError as exc:
        assert exc.status == 400
        return
    for seg in path.segments:
        assert seg not in ("", ".", "..")
        assert "/" not in seg and "\\" not in seg and "\x00" not in seg
    joined = os.path.normpath(os.path.join(ROOT, *path.segments))
    assert joined == ROOT or joined.startswith(ROOT + os.sep)
    assert path.hidden is any(s.startswith(".") for s in path.segments)
