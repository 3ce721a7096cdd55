"""Validators and preconditions (RFC 9110 §8.8, §13)."""

from __future__ import annotations

import pytest

from server.http.conditional import (
    evaluate_preconditions,
    if_match_passes,
    if_none_match_matches,
    if_range_allows_range,
    make_etag,
)
from server.http.httpdate import format_http_date

ETAG = make_etag(1234, 784111777_000000000)
OTHER = make_etag(1234, 784111778_000000000)
LM = 784111777  # Last-Modified, whole seconds
LM_DATE = format_http_date(LM)
EARLIER = format_http_date(LM - 1)
LATER = format_http_date(LM + 1)
LM_RFC850 = "Sunday, 06-Nov-94 08:49:37 GMT"
LM_ASCTIME = "Sun Nov  6 08:49:37 1994"


def test_etag_is_strong_and_quoted():
    assert ETAG.startswith('"') and ETAG.endswith('"')
    assert not ETAG.startswith("W/")
    assert '"' not in ETAG[1:-1]


def test_etag_is_deterministic_for_same_size_and_mtime():
    assert make_etag(10, 20) == make_etag(10, 20)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param((10, 20), (11, 20), id="different-size-different-tag"),
        pytest.param((10, 20), (10, 21), id="different-mtime-different-tag"),
        pytest.param((10, 20), (20, 10), id="size-and-mtime-not-interchangeable"),
        pytest.param((0x1, 0x23), (0x12, 0x3), id="field-boundary-not-ambiguous"),
        pytest.param((10, 1_000_000_000), (10, 1_000_000_001), id="nanosecond-mtime-change"),
    ],
)
def test_etag_differs_when_size_or_mtime_differs(a, b):
    assert make_etag(*a) != make_etag(*b)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(ETAG, True, id="if-match-exact-strong"),
        pytest.param("*", True, id="if-match-star"),
        pytest.param(" * ", True, id="if-match-star-with-ows"),
        pytest.param(f'"x", {ETAG}', True, id="if-match-list-member"),
        pytest.param(f'"x",{ETAG} , "y"', True, id="if-match-list-member-odd-ows"),
        pytest.param(f"W/{ETAG}", False, id="if-match-weak-never-matches-strong-comparison"),
        pytest.param(OTHER, False, id="if-match-other-tag"),
        pytest.param('"x", "y"', False, id="if-match-list-without-ours"),
        pytest.param(ETAG[1:-1], False, id="if-match-unquoted-tag"),
        pytest.param("", False, id="if-match-empty"),
    ],
)
def test_if_match_uses_strong_comparison(value, expected):
    assert if_match_passes(value, ETAG) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(ETAG, True, id="inm-exact"),
        pytest.param(f"W/{ETAG}", True, id="inm-weak-comparison-ignores-w-prefix"),
        pytest.param("*", True, id="inm-star"),
        pytest.param(f'"x", W/{ETAG}', True, id="inm-list-member-weak"),
        pytest.param(OTHER, False, id="inm-other-tag"),
        pytest.param('"x", W/"y"', False, id="inm-list-without-ours"),
        pytest.param(ETAG[1:-1], False, id="inm-unquoted-tag"),
    ],
)
def test_if_none_match_uses_weak_comparison(value, expected):
    assert if_none_match_matches(value, ETAG) is expected


def _eval(method="GET", **fields):
    return evaluate_preconditions(method, ETAG, LM, **fields)


@pytest.mark.parametrize(
    ("method", "fields", "expected"),
    [
        pytest.param("GET", {}, None, id="no-preconditions-proceed"),
        # Step 1: If-Match.
        pytest.param("GET", {"if_match": ETAG}, None, id="if-match-pass-proceeds"),
        pytest.param("GET", {"if_match": OTHER}, 412, id="if-match-fail-412"),
        pytest.param("GET", {"if_match": f"W/{ETAG}"}, 412, id="if-match-weak-tag-412"),
        pytest.param("HEAD", {"if_match": OTHER}, 412, id="if-match-fail-412-head"),
        pytest.param("GET", {"if_match": "*"}, None, id="if-match-star-proceeds"),
        # Step 2: If-Unmodified-Since, only without If-Match.
        pytest.param("GET", {"if_unmodified_since": EARLIER}, 412, id="ius-earlier-412"),
        pytest.param("GET", {"if_unmodified_since": LM_DATE}, None, id="ius-equal-proceeds"),
        pytest.param("GET", {"if_unmodified_since": LATER}, None, id="ius-later-proceeds"),
        pytest.param("GET", {"if_unmodified_since": "junk"}, None, id="ius-invalid-ignored"),
        pytest.param(
            "GET",
            {"if_unmodified_since": "Mon, 31 Feb 1994 00:00:00 GMT"},
            None,
            id="ius-impossible-date-ignored",
        ),
        pytest.param(
            "GET",
            {"if_match": ETAG, "if_unmodified_since": EARLIER},
            None,
            id="ius-ignored-when-if-match-present",
        ),
        # Step 3: If-None-Match.
        pytest.param("GET", {"if_none_match": ETAG}, 304, id="inm-match-304-get"),
        pytest.param("HEAD", {"if_none_match": ETAG}, 304, id="inm-match-304-head"),
        pytest.param("POST", {"if_none_match": ETAG}, 412, id="inm-match-412-other-method"),
        pytest.param("DELETE", {"if_none_match": "*"}, 412, id="inm-star-412-other-method"),
        pytest.param("GET", {"if_none_match": f"W/{ETAG}"}, 304, id="inm-weak-match-304"),
        pytest.param("GET", {"if_none_match": "*"}, 304, id="inm-star-304"),
        pytest.param("GET", {"if_none_match": OTHER}, None, id="inm-mismatch-proceeds"),
        # Step 4: If-Modified-Since, only without If-None-Match, GET/HEAD only.
        pytest.param("GET", {"if_modified_since": LM_DATE}, 304, id="ims-equal-304"),
        pytest.param("GET", {"if_modified_since": LATER}, 304, id="ims-later-304"),
        pytest.param("HEAD", {"if_modified_since": LM_DATE}, 304, id="ims-equal-304-head"),
        pytest.param("GET", {"if_modified_since": EARLIER}, None, id="ims-earlier-proceeds"),
        pytest.param("GET", {"if_modified_since": LM_RFC850}, 304, id="ims-rfc850-date"),
        pytest.param("GET", {"if_modified_since": LM_ASCTIME}, 304, id="ims-asctime-date"),
        pytest.param("GET", {"if_modified_since": "junk"}, None, id="ims-invalid-ignored"),
        pytest.param(
            "GET",
            {"if_modified_since": "Mon, 31 Feb 2099 00:00:00 GMT"},
            None,
            id="ims-impossible-date-ignored",
        ),
        pytest.param("POST", {"if_modified_since": LATER}, None, id="ims-ignored-for-post"),
        pytest.param(
            "GET",
            {"if_none_match": OTHER, "if_modified_since": LATER},
            None,
            id="ims-ignored-when-inm-present",
        ),
        # Order between steps.
        pytest.param(
            "GET",
            {"if_match": OTHER, "if_none_match": ETAG},
            412,
            id="if-match-evaluated-before-inm",
        ),
        pytest.param(
            "GET",
            {"if_unmodified_since": EARLIER, "if_modified_since": LATER},
            412,
            id="ius-evaluated-before-ims",
        ),
        pytest.param(
            "GET",
            {"if_match": ETAG, "if_none_match": ETAG},
            304,
            id="if-match-pass-then-inm-match-304",
        ),
    ],
)
def test_preconditions_follow_rfc9110_evaluation_order(method, fields, expected):
    assert _eval(method, **fields) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(ETAG, True, id="if-range-strong-etag-equal-applies"),
        pytest.param(f" {ETAG} ", True, id="if-range-strong-etag-with-ows"),
        pytest.param(f"W/{ETAG}", False, id="if-range-weak-etag-never-applies"),
        pytest.param(OTHER, False, id="if-range-other-etag-full"),
        pytest.param(f"{ETAG}, {ETAG}", False, id="if-range-list-is-not-one-tag"),
        pytest.param(LM_DATE, True, id="if-range-date-exactly-last-modified"),
        pytest.param(LM_RFC850, True, id="if-range-rfc850-date-equal"),
        pytest.param(LM_ASCTIME, True, id="if-range-asctime-date-equal"),
        pytest.param(EARLIER, False, id="if-range-earlier-date-full"),
        pytest.param(LATER, False, id="if-range-later-date-full"),
        pytest.param("garbage", False, id="if-range-garbage-full"),
        pytest.param("", False, id="if-range-empty-full"),
        pytest.param("*", False, id="if-range-star-full"),
        pytest.param(ETAG[:-1], False, id="if-range-unterminated-tag-full"),
        pytest.param("Mon, 31 Feb 1994 08:49:37 GMT", False, id="if-range-impossible-date-full"),
    ],
)
def test_if_range_applies_only_to_strong_etag_or_exact_date(value, expected):
    assert if_range_allows_range(value, ETAG, LM) is expected
