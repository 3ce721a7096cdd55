"""HTTP-date formatting and parsing (RFC 9110 §5.6.7)."""

from __future__ import annotations

import calendar
import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_INDEX = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)}


def format_http_date(seconds: float) -> str:
    """IMF-fixdate for a POSIX timestamp, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(int(seconds))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def format_clf_date(seconds: float) -> str:
    """The Common Log Format's time, e.g. ``06/Nov/1994:08:49:37 +0000``."""
    t = time.gmtime(int(seconds))
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _digits(text: str, width: int) -> bool:
    return len(text) == width and text.isascii() and text.isdigit()


def _clock(text: str) -> tuple[int, int, int] | None:
    parts = text.split(":")
    if len(parts) != 3 or not all(_digits(p, 2) for p in parts):
        return None
    h, m, s = (int(p) for p in parts)
    # A leap second (":60") is allowed by the grammar; treat it as the next second's start.
    if h > 23 or m > 59 or s > 60:
        return None
    return h, m, s


def _year(text: str, two_digit: bool) -> int | None:
    if two_digit:
        if not _digits(text, 2):
            return None
        # RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past
        # century. Pinned to the RFC 850 convention used by every peer: 70-99 -> 19xx.
        year = int(text)
        return year + (1900 if year >= 70 else 2000)
    if not _digits(text, 4):
        return None
    return int(text)


def _to_timestamp(year: int, month: int, day: int, clock: tuple[int, int, int]) -> int | None:
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return calendar.timegm((year, month, day, *clock, 0, 0, 0))


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP-date in any of its three forms, or None.

    Recipients MUST accept all three (RFC 9110 §5.6.7): IMF-fixdate
    ``Sun, 06 Nov 1994 08:49:37 GMT``, RFC 850 ``Sunday, 06-Nov-94 08:49:37 GMT`` and
    asctime ``Sun Nov  6 08:49:37 1994``. Anything else is invalid and yields None, so
    the conditional header that carried it is ignored.
    """
    fields = value.split()
    if len(fields) == 6 and fields[5] == "GMT" and fields[0].endswith(","):
        # IMF-fixdate: day-name "," SP date1 SP time-of-day SP GMT
        _, day, month, year, clock, _ = fields
        m = _MONTH_INDEX.get(month.lower())
        y = _year(year, two_digit=False)
        c = _clock(clock)
        if m is None or y is None or c is None or not _digits(day, 2):
            return None
        return _to_timestamp(y, m, int(day), c)
    if len(fields) == 4 and fields[3] == "GMT" and fields[0].endswith(","):
        # RFC 850: day-name-l "," SP date2 SP time-of-day SP GMT, date2 = dd-Mon-yy
        date = fields[1].split("-")
        if len(date) != 3 or not _digits(date[0], 2):
            return None
        m = _MONTH_INDEX.get(date[1].lower())
        y = _year(date[2], two_digit=True)
        c = _clock(fields[2])
        if m is None or y is None or c is None:
            return None
        return _to_timestamp(y, m, int(date[0]), c)
    if len(fields) == 5:
        # asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT )) SP time-of-day SP year
        _, month, day, clock, year = fields
        m = _MONTH_INDEX.get(month.lower())
        y = _year(year, two_digit=False)
        c = _clock(clock)
        if m is None or y is None or c is None or not (_digits(day, 1) or _digits(day, 2)):
            return None
        return _to_timestamp(y, m, int(day), c)
    return None
