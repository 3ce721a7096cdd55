"""Range header grammar and policy (RFC 9110 §14), against the contract in the brief."""

from __future__ import annotations

import pytest

from server.http.ranges import (
    MAX_RANGES,
    ByteRange,
    RangeKind,
    coalesce,
    decide_ranges,
    parse_byte_ranges,
)

GiB = 1024**3

# (Range value, file size, expected ranges as (first, last) inclusive pairs), PARTIAL only.
PARTIAL_CASES = [
    pytest.param("bytes=0-9", 100, [(0, 9)], id="closed-range"),
    pytest.param("bytes=0-0", 100, [(0, 0)], id="single-first-byte"),
    pytest.param("bytes=99-99", 100, [(99, 99)], id="single-last-byte"),
    pytest.param("bytes=10-", 100, [(10, 99)], id="open-range-to-end"),
    pytest.param("bytes=0-", 100, [(0, 99)], id="open-range-from-zero-is-whole-file"),
    pytest.param("bytes=-10", 100, [(90, 99)], id="suffix-range-last-n-bytes"),
    pytest.param("bytes=-100", 100, [(0, 99)], id="suffix-equal-to-size-is-whole-file"),
    pytest.param("bytes=-1000", 100, [(0, 99)], id="suffix-longer-than-file-is-whole-file"),
    pytest.param("bytes=50-1000", 100, [(50, 99)], id="end-clamped-to-last-byte"),
    pytest.param("bytes=0-99", 100, [(0, 99)], id="end-exactly-last-byte"),
    pytest.param("BYTES=0-9", 100, [(0, 9)], id="unit-case-insensitive-upper"),
    pytest.param("Bytes=0-9", 100, [(0, 9)], id="unit-case-insensitive-mixed"),
    pytest.param("bytes=0-1 , 5-6", 100, [(0, 1), (5, 6)], id="ows-around-comma"),
    pytest.param("bytes=0-1,\t5-6", 100, [(0, 1), (5, 6)], id="htab-ows-after-comma"),
    pytest.param("bytes=,0-1,,5-6,", 100, [(0, 1), (5, 6)], id="empty-list-elements-allowed"),
    pytest.param("bytes=200-300,0-9", 100, [(0, 9)], id="unsatisfiable-mixed-is-dropped"),
    pytest.param("bytes=-0,0-9", 100, [(0, 9)], id="suffix-zero-mixed-is-dropped"),
    pytest.param("bytes=0-9,20-29", 100, [(0, 9), (20, 29)], id="two-disjoint-ranges"),
    pytest.param("bytes=20-29,0-9", 100, [(20, 29), (0, 9)], id="parts-kept-in-request-order"),
    pytest.param("bytes=0-9,5-14", 100, [(0, 14)], id="overlapping-ranges-coalesced"),
    pytest.param("bytes=0-9,10-19", 100, [(0, 19)], id="adjacent-ranges-coalesced"),
    pytest.param(
        "bytes=50-59,0-4,55-69",
        100,
        [(50, 69), (0, 4)],
        id="merged-range-takes-position-of-earliest-absorbed",
    ),
    pytest.param(
        "bytes=0-4,60-69,50-59",
        100,
        [(0, 4), (50, 69)],
        id="merged-range-positioned-at-earliest-member-not-latest",
    ),
    pytest.param(
        f"bytes={5 * GiB}-{5 * GiB + 9}",
        6 * GiB,
        [(5 * GiB, 5 * GiB + 9)],
        id="offsets-beyond-4GiB",
    ),
    pytest.param(f"bytes=-{GiB}", 5 * GiB, [(4 * GiB, 5 * GiB - 1)], id="suffix-beyond-4GiB"),
    pytest.param("bytes=0-" + "9" * 40, 100, [(0, 99)], id="huge-last-pos-clamped"),
    pytest.param("bytes=-" + "9" * 40, 100, [(0, 99)], id="huge-suffix-is-whole-file"),
    pytest.param("bytes=007-009", 100, [(7, 9)], id="leading-zeros-are-digits"),
    pytest.param(
        "bytes=" + "0" * 25 + "-9",
        100,
        [(0, 9)],
        id="many-leading-zeros-still-small-number",
    ),
]


@pytest.mark.parametrize(("value", "size", "expected"), PARTIAL_CASES)
def test_satisfiable_range_returns_partial_with_clamped_ranges(value, size, expected):
    decision = decide_ranges(value, size)
    assert decision.kind is RangeKind.PARTIAL
    assert [(r.start, r.stop - 1) for r in decision.ranges] == expected


IGNORED_CASES = [
    pytest.param("bytes=abc", 100, id="non-numeric-spec-is-invalid"),
    pytest.param("bytes=5-1", 100, id="last-before-first-is-invalid"),
    pytest.param("bytes=", 100, id="empty-range-set-is-invalid"),
    pytest.param("bytes=,", 100, id="only-empty-elements-is-invalid"),
    pytest.param("bytes 0-9", 100, id="missing-equals-is-invalid"),
    pytest.param("bytes0-9", 100, id="missing-equals-no-space-is-invalid"),
    pytest.param("items=0-9", 100, id="other-unit-ignored"),
    pytest.param("=0-9", 100, id="empty-unit-ignored"),
    pytest.param("bytes=0-9,abc", 100, id="one-bad-element-invalidates-set"),
    pytest.param("bytes=+5-9", 100, id="plus-sign-is-not-a-digit"),
    pytest.param("bytes=0-+9", 100, id="plus-sign-in-last-pos"),
    pytest.param("bytes=-+9", 100, id="plus-sign-in-suffix"),
    pytest.param("bytes=\u00b2-9", 100, id="superscript-digit-rejected"),
    pytest.param("bytes=0-\u0669", 100, id="arabic-indic-digit-rejected"),
    pytest.param("bytes=\uff10-9", 100, id="fullwidth-digit-rejected"),
    pytest.param("bytes=1 0-20", 100, id="space-inside-number-rejected"),
    pytest.param("bytes=0 -9", 100, id="space-before-dash-rejected"),
    pytest.param("bytes=0- 9", 100, id="space-after-dash-rejected"),
    pytest.param("bytes=-", 100, id="lone-dash-is-invalid"),
    pytest.param("bytes=5", 100, id="missing-dash-is-invalid"),
    pytest.param("bytes=1-2-3", 100, id="two-dashes-is-invalid"),
    pytest.param("bytes=-5-9", 100, id="negative-first-pos-is-invalid"),
    pytest.param("bytes=0x10-0x20", 100, id="hex-is-not-digits"),
    pytest.param("bytes=0-59,40-99", 100, id="sum-of-lengths-over-size-sends-whole-file"),
    pytest.param("bytes=0-,0-,0-", 100, id="repeated-whole-file-amplification"),
    pytest.param("bytes=-60,-60", 100, id="overlapping-suffixes-over-size"),
    pytest.param("bytes=0-9", 0, id="zero-length-file-ignores-range"),
    pytest.param("bytes=-5", 0, id="zero-length-file-ignores-suffix"),
    pytest.param("bytes=0-", 0, id="zero-length-file-ignores-open-range"),
    pytest.param(
        "bytes=" + "2" * 20 + "-" + "1" * 20,
        100,
        id="huge-last-before-huge-first-is-invalid",
    ),
]


@pytest.mark.parametrize(("value", "size"), IGNORED_CASES)
def test_invalid_or_abusive_range_is_ignored_and_whole_file_sent(value, size):
    decision = decide_ranges(value, size)
    assert decision.kind is RangeKind.FULL
    assert decision.ranges == ()


UNSATISFIABLE_CASES = [
    pytest.param("bytes=100-", 100, id="first-pos-equal-to-size"),
    pytest.param("bytes=100-200", 100, id="first-pos-at-end-with-last"),
    pytest.param("bytes=500-600", 100, id="first-pos-beyond-end"),
    pytest.param("bytes=-0", 100, id="suffix-zero-is-unsatisfiable"),
    pytest.param("bytes=-0,-0", 100, id="only-suffix-zeros"),
    pytest.param("bytes=100-,200-300", 100, id="all-ranges-unsatisfiable"),
    pytest.param("bytes=" + "9" * 40 + "-", 100, id="huge-first-pos-is-unsatisfiable"),
    pytest.param(f"bytes={5 * GiB}-", 5 * GiB, id="first-pos-at-end-beyond-4GiB"),
]


@pytest.mark.parametrize(("value", "size"), UNSATISFIABLE_CASES)
def test_no_satisfiable_range_is_unsatisfiable(value, size):
    decision = decide_ranges(value, size)
    assert decision.kind is RangeKind.UNSATISFIABLE
    assert decision.ranges == ()


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        pytest.param("bytes=0-9", 100, [(0, 10)], id="grammar-returns-half-open-window"),
        pytest.param("bytes=0-9,5-14", 100, [(0, 10), (5, 15)], id="grammar-does-not-coalesce"),
        pytest.param("bytes=0-59,40-99", 100, [(0, 60), (40, 100)], id="grammar-keeps-sum"),
        pytest.param("bytes=100-,-0", 100, [], id="grammar-empty-list-when-none-satisfiable"),
        pytest.param("bytes=0-9", 0, [], id="grammar-nothing-satisfiable-in-empty-file"),
    ],
)
def test_parse_byte_ranges_returns_satisfiable_windows_in_request_order(value, size, expected):
    parsed = parse_byte_ranges(value, size)
    assert parsed is not None
    assert [(r.start, r.stop) for r in parsed] == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("bytes=5-1", id="reversed"),
        pytest.param("pages=0-1", id="other-unit"),
        pytest.param("bytes=", id="empty-set"),
        pytest.param("0-1", id="no-unit"),
    ],
)
def test_parse_byte_ranges_returns_none_for_invalid_syntax(value):
    assert parse_byte_ranges(value, 100) is None


@pytest.mark.parametrize(
    "digits",
    [
        pytest.param(10_000, id="ten-thousand-digits"),
        pytest.param(100_000, id="hundred-thousand-digits-beyond-int-str-limit"),
    ],
)
def test_very_long_digit_strings_do_not_raise(digits):
    big = "9" * digits
    for value in (f"bytes={big}-", f"bytes=0-{big}", f"bytes=-{big}", f"bytes={big}-{big}"):
        decide_ranges(value, 1000)
        parse_byte_ranges(value, 1000)


def _disjoint(n: int) -> str:
    return "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(n))


def test_exactly_max_ranges_after_coalescing_is_partial():
    decision = decide_ranges(_disjoint(MAX_RANGES), 10_000)
    assert decision.kind is RangeKind.PARTIAL
    assert len(decision.ranges) == MAX_RANGES


def test_more_than_max_ranges_after_coalescing_sends_whole_file():
    assert decide_ranges(_disjoint(MAX_RANGES + 1), 10_000).kind is RangeKind.FULL


def test_many_adjacent_ranges_coalescing_under_the_cap_are_partial():
    value = "bytes=" + ",".join(f"{i}-{i}" for i in range(500))
    decision = decide_ranges(value, 10_000)
    assert decision.kind is RangeKind.PARTIAL
    assert decision.ranges == (ByteRange(0, 500),)


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([(0, 5)], [(0, 5)], id="single"),
        pytest.param([(5, 10), (0, 5)], [(0, 10)], id="adjacent-reversed"),
        pytest.param([(0, 10), (2, 3)], [(0, 10)], id="contained"),
        pytest.param([(30, 40), (0, 5), (10, 20)], [(30, 40), (0, 5), (10, 20)], id="disjoint"),
        pytest.param(
            [(30, 40), (0, 5), (35, 50), (4, 8)],
            [(30, 50), (0, 8)],
            id="two-merges-keep-first-positions",
        ),
    ],
)
def test_coalesce_merges_overlap_and_adjacency_keeping_request_order(ranges, expected):
    merged = coalesce([ByteRange(a, b) for a, b in ranges])
    assert [(r.start, r.stop) for r in merged] == expected


@pytest.mark.parametrize(
    ("start", "stop", "size", "expected"),
    [
        pytest.param(0, 10, 100, "bytes 0-9/100", id="content-range-inclusive-last"),
        pytest.param(99, 100, 100, "bytes 99-99/100", id="content-range-last-byte"),
        pytest.param(
            4 * GiB, 5 * GiB, 5 * GiB, f"bytes {4 * GiB}-{5 * GiB - 1}/{5 * GiB}", id="over-4GiB"
        ),
    ],
)
def test_content_range_names_inclusive_last_byte_and_size(start, stop, size, expected):
    assert ByteRange(start, stop).content_range(size) == expected
    assert ByteRange(start, stop).length == stop - start
