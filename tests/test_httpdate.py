"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

from __future__ import annotations

import pytest

from server.http.httpdate import format_http_date, parse_http_date

# Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example.
RFC_EXAMPLE = 784111777


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", id="imf-fixdate"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", id="rfc850-obsolete"),
        pytest.param("Sun Nov  6 08:49:37 1994", id="asctime-space-padded-day"),
        pytest.param("Sun Nov 06 08:49:37 1994", id="asctime-two-digit-day"),
    ],
)
def test_all_three_date_formats_parse_to_the_same_timestamp(value):
    assert parse_http_date(value) == RFC_EXAMPLE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Thu, 01 Jan 1970 00:00:00 GMT", 0, id="epoch"),
        pytest.param("Tue, 29 Feb 2000 12:00:00 GMT", 951825600, id="leap-day-in-400-year"),
        pytest.param("Thursday, 01-Jan-70 00:00:00 GMT", 0, id="rfc850-two-digit-year-70-is-1970"),
        pytest.param(
            "Saturday, 01-Jan-00 00:00:00 GMT", 946684800, id="rfc850-two-digit-year-00-is-2000"
        ),
        pytest.param("Fri, 01 Jan 2100 00:00:00 GMT", 4102444800, id="year-2100"),
        pytest.param("Wed, 01 Jan 2200 00:00:00 GMT", 7258118400, id="beyond-32-bit-time"),
    ],
)
def test_valid_date_parses_to_posix_seconds(value, expected):
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("Mon, 31 Feb 2020 00:00:00 GMT", id="bad-day-31-feb"),
        pytest.param("Thu, 29 Feb 1900 00:00:00 GMT", id="bad-day-29-feb-non-leap-century"),
        pytest.param("Mon, 00 Jan 2020 00:00:00 GMT", id="bad-day-zero"),
        pytest.param("Mon, 32 Jan 2020 00:00:00 GMT", id="bad-day-32"),
        pytest.param("Sun, 06 Foo 1994 08:49:37 GMT", id="bad-month"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 UTC", id="wrong-zone-utc"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 +0000", id="wrong-zone-offset"),
        pytest.param("Sun, 06 Nov 1994 08:49:37", id="missing-zone"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 EST", id="rfc850-wrong-zone"),
        pytest.param("Sun Nov  6 08:49:37 1994 GMT", id="asctime-with-zone"),
        pytest.param("Sun, 06 Nov 1994 24:00:00 GMT", id="hour-24"),
        pytest.param("Sun, 06 Nov 1994 08:60:00 GMT", id="minute-60"),
        pytest.param("Sun, 06 Nov 1994 08:49 GMT", id="clock-without-seconds"),
        pytest.param("Sun, 6 Nov 1994 08:49:37 GMT", id="imf-one-digit-day"),
        pytest.param("Sun, 06 Nov 94 08:49:37 GMT", id="imf-two-digit-year"),
        pytest.param("Sat, 01 Jan 0000 00:00:00 GMT", id="year-zero"),
        pytest.param("Sun, \uff10\uff16 Nov 1994 08:49:37 GMT", id="fullwidth-digits-day"),
        pytest.param("Sun, 06 Nov \u0661\u0669\u0669\u0664 08:49:37 GMT", id="arabic-digit-year"),
        pytest.param("Sun, 06 Nov 1994 0\u00b2:49:37 GMT", id="superscript-digit-clock"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT, Sun", id="trailing-list-member"),
        pytest.param(
            "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", id="two-dates"
        ),
        pytest.param("Sunday, 6-Nov-94 08:49:37 GMT", id="rfc850-one-digit-day"),
        pytest.param("Sunday, 06-Nov-1994 08:49:37 GMT", id="rfc850-four-digit-year"),
        pytest.param("Sun Nov 106 08:49:37 1994", id="asctime-three-digit-day"),
        pytest.param("784111777", id="bare-timestamp"),
    ],
)
def test_invalid_date_returns_none(value):
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(RFC_EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT", id="rfc-example"),
        pytest.param(0, "Thu, 01 Jan 1970 00:00:00 GMT", id="epoch-zero-padded"),
        pytest.param(RFC_EXAMPLE + 0.999, "Sun, 06 Nov 1994 08:49:37 GMT", id="fraction-floored"),
        pytest.param(951825600, "Tue, 29 Feb 2000 12:00:00 GMT", id="leap-day"),
    ],
)
def test_format_http_date_gives_imf_fixdate(seconds, expected):
    assert format_http_date(seconds) == expected


@pytest.mark.parametrize(
    "seconds",
    [0, 1, RFC_EXAMPLE, 951825600, 2**31 - 1, 2**31, 2**32 + 12345, 7258118400],
)
def test_formatted_date_parses_back_to_the_same_second(seconds):
    assert parse_http_date(format_http_date(seconds)) == seconds
