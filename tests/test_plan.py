"""Response plans for files, errors and bodiless responses (pure planner, no I/O)."""

from __future__ import annotations

import re

import pytest

from server.http.conditional import make_etag
from server.http.head import REASONS
from server.http.httpdate import format_http_date, parse_http_date
from server.http.multipart import FileWindow
from server.http.plan import FileFacts, plan_error, plan_file, plan_no_content
from server.http.request import Request

SIZE = 1000
MTIME_NS = 784111777_123456789
LM = MTIME_NS // 1_000_000_000
CTYPE = "text/plain; charset=utf-8"
FACTS = FileFacts(SIZE, MTIME_NS, CTYPE)
ETAG = make_etag(SIZE, MTIME_NS)
LM_DATE = format_http_date(LM)
GiB = 1024**3


def _request(method: str = "GET", version: str = "1.1", **fields) -> Request:
    req = Request()
    req.method = method
    req.version = version
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def _parse_head(head: bytes) -> tuple[str, dict[str, list[str]]]:
    """(status line, lower-cased field name -> values) of a complete response head."""
    assert head.endswith(b"\r\n\r\n")
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    assert all("\n" not in line and "\r" not in line for line in lines)
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(": ")
        assert sep and re.fullmatch(r"[A-Za-z0-9-]+", name), line
        fields.setdefault(name.lower(), []).append(value)
    return lines[0], fields


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def _body_bytes(segments) -> int:
    return sum(s.length if isinstance(s, FileWindow) else len(s) for s in segments)


def _windows(segments) -> list[tuple[int, int]]:
    return [(s.offset, s.length) for s in segments if isinstance(s, FileWindow)]


# (request fields, expected status, expected Content-Range or None, expected file windows)
FILE_CASES = [
    pytest.param({}, 200, None, [(0, SIZE)], id="get-without-range-whole-file"),
    pytest.param({"range": "bytes=0-99"}, 206, "bytes 0-99/1000", [(0, 100)], id="single-range"),
    pytest.param({"range": "bytes=990-"}, 206, "bytes 990-999/1000", [(990, 10)], id="open-range"),
    pytest.param({"range": "bytes=-10"}, 206, "bytes 990-999/1000", [(990, 10)], id="suffix"),
    pytest.param(
        {"range": "bytes=-5000"},
        206,
        "bytes 0-999/1000",
        [(0, SIZE)],
        id="suffix-longer-than-file-is-whole-file",
    ),
    pytest.param(
        {"range": "bytes=900-5000"}, 206, "bytes 900-999/1000", [(900, 100)], id="end-clamped"
    ),
    pytest.param({"range": "bytes=1000-"}, 416, "bytes */1000", [], id="start-at-end-416"),
    pytest.param({"range": "bytes=-0"}, 416, "bytes */1000", [], id="suffix-zero-416"),
    pytest.param({"range": "bytes=abc"}, 200, None, [(0, SIZE)], id="invalid-range-ignored"),
    pytest.param({"range": "items=0-1"}, 200, None, [(0, SIZE)], id="other-unit-ignored"),
    pytest.param(
        {"range": "bytes=0-599,400-999"}, 200, None, [(0, SIZE)], id="sum-over-size-whole-file"
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": ETAG},
        206,
        "bytes 0-9/1000",
        [(0, 10)],
        id="if-range-strong-etag-match-applies-range",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": LM_DATE},
        206,
        "bytes 0-9/1000",
        [(0, 10)],
        id="if-range-exact-date-applies-range",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": "W/" + ETAG},
        200,
        None,
        [(0, SIZE)],
        id="if-range-weak-etag-full-200",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": '"other"'},
        200,
        None,
        [(0, SIZE)],
        id="if-range-mismatch-full-200",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": format_http_date(LM + 1)},
        200,
        None,
        [(0, SIZE)],
        id="if-range-other-date-full-200",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_range": "garbage"},
        200,
        None,
        [(0, SIZE)],
        id="if-range-garbage-full-200",
    ),
    pytest.param(
        {"range": "bytes=5000-", "if_range": '"other"'},
        200,
        None,
        [(0, SIZE)],
        id="if-range-mismatch-beats-416",
    ),
    pytest.param(
        {"range": "bytes=0-9", "if_none_match": '"other"'},
        206,
        "bytes 0-9/1000",
        [(0, 10)],
        id="passing-precondition-then-range",
    ),
]


@pytest.mark.parametrize(("fields", "status", "content_range", "windows"), FILE_CASES)
def test_get_plan_status_headers_and_windows(fields, status, content_range, windows):
    plan = plan_file(_request(**fields), FACTS, close=False)
    status_line, head = _parse_head(plan.head())
    assert plan.status == status
    assert status_line == f"HTTP/1.1 {status} {REASONS[status]}"
    assert _windows(plan.segments) == windows
    assert int(_one(head, "content-length")) == _body_bytes(plan.segments) == plan.body_length
    assert _one(head, "etag") == ETAG
    assert _one(head, "last-modified") == LM_DATE
    assert _one(head, "accept-ranges") == "bytes"
    assert parse_http_date(_one(head, "date")) is not None
    assert "connection" not in head
    if content_range is None:
        assert "content-range" not in head
    else:
        assert _one(head, "content-range") == content_range
    if status in (200, 206):
        assert _one(head, "content-type") == CTYPE
        assert plan.uses_file
        assert _body_bytes(s for s in plan.segments if isinstance(s, FileWindow)) == sum(
            length for _, length in windows
        )
    else:
        assert plan.segments == (b"416 Range Not Satisfiable\n",)
        assert not plan.uses_file


def test_multiple_ranges_give_multipart_with_exact_content_length():
    plan = plan_file(_request(range="bytes=500-509,0-9"), FACTS, close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 206
    ctype = _one(head, "content-type")
    m = re.fullmatch(r"multipart/byteranges; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})", ctype)
    assert m is not None, ctype
    boundary = m.group(1)
    assert int(_one(head, "content-length")) == _body_bytes(plan.segments) == plan.body_length
    assert "content-range" not in head
    assert _windows(plan.segments) == [(500, 10), (0, 10)]
    framing = b"".join(s for s in plan.segments if isinstance(s, bytes)).decode("latin-1")
    assert framing.count(f"--{boundary}\r\n") == 2
    assert framing.endswith(f"\r\n--{boundary}--\r\n")
    assert f"Content-Type: {CTYPE}\r\n" in framing
    assert "Content-Range: bytes 500-509/1000\r\n" in framing
    assert "Content-Range: bytes 0-9/1000\r\n" in framing


def test_overlapping_ranges_coalesce_into_single_part_response():
    plan = plan_file(_request(range="bytes=0-9,5-19"), FACTS, close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 206
    assert _one(head, "content-range") == "bytes 0-19/1000"
    assert _one(head, "content-type") == CTYPE
    assert _windows(plan.segments) == [(0, 20)]


def test_range_offsets_beyond_4gib_are_planned_exactly():
    size = 5 * GiB + 77
    facts = FileFacts(size, MTIME_NS, "application/octet-stream")
    start = 4 * GiB + 1000
    plan = plan_file(_request(range=f"bytes={start}-{start + 99}"), facts, close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 206
    assert _one(head, "content-range") == f"bytes {start}-{start + 99}/{size}"
    assert _one(head, "content-length") == "100"
    assert plan.segments == (FileWindow(start, 100),)


def test_whole_file_beyond_4gib_has_exact_content_length():
    size = 5 * GiB + 77
    plan = plan_file(_request(), FileFacts(size, MTIME_NS, "x/y"), close=False)
    _, head = _parse_head(plan.head())
    assert _one(head, "content-length") == str(size)
    assert plan.segments == (FileWindow(0, size),)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="head-plain"),
        pytest.param({"range": "bytes=0-9"}, id="head-with-range-gets-200-full-headers"),
        pytest.param({"range": "bytes=5000-"}, id="head-with-unsatisfiable-range-gets-200"),
        pytest.param({"range": "bytes=0-9,20-29"}, id="head-with-multi-range-gets-200"),
    ],
)
def test_head_gets_full_200_headers_and_no_body(fields):
    plan = plan_file(_request("HEAD", **fields), FACTS, close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 200
    assert plan.segments == ()
    assert plan.body_length == 0
    assert not plan.uses_file
    assert _one(head, "content-length") == str(SIZE)
    assert _one(head, "content-type") == CTYPE
    assert _one(head, "etag") == ETAG
    assert _one(head, "last-modified") == LM_DATE
    assert _one(head, "accept-ranges") == "bytes"
    assert "content-range" not in head


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="empty-file-get"),
        pytest.param({"range": "bytes=0-9"}, id="empty-file-ignores-range"),
        pytest.param({"range": "bytes=-0"}, id="empty-file-ignores-suffix-zero"),
    ],
)
def test_zero_length_file_gets_200_with_content_length_zero(fields):
    plan = plan_file(_request(**fields), FileFacts(0, MTIME_NS, CTYPE), close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 200
    assert _one(head, "content-length") == "0"
    assert "content-range" not in head
    assert _body_bytes(plan.segments) == 0


@pytest.mark.parametrize(
    ("method", "fields"),
    [
        pytest.param("GET", {"if_none_match": ETAG}, id="inm-match-304"),
        pytest.param("GET", {"if_none_match": "*"}, id="inm-star-304"),
        pytest.param("HEAD", {"if_none_match": ETAG}, id="inm-match-304-head"),
        pytest.param("GET", {"if_modified_since": LM_DATE}, id="ims-equal-304"),
        pytest.param(
            "GET",
            {"if_none_match": ETAG, "range": "bytes=0-9"},
            id="304-takes-precedence-over-range",
        ),
    ],
)
def test_not_modified_carries_validators_and_date_and_no_body(method, fields):
    plan = plan_file(_request(method, **fields), FACTS, close=False)
    status_line, head = _parse_head(plan.head())
    assert plan.status == 304
    assert status_line == "HTTP/1.1 304 Not Modified"
    assert _one(head, "etag") == ETAG
    assert _one(head, "last-modified") == LM_DATE
    assert parse_http_date(_one(head, "date")) is not None
    assert plan.segments == ()
    assert plan.body_length == 0
    assert "content-length" not in head
    assert "content-type" not in head
    assert "content-range" not in head


@pytest.mark.parametrize(
    ("method", "fields"),
    [
        pytest.param("GET", {"if_match": '"other"'}, id="if-match-fail-412"),
        pytest.param("GET", {"if_match": "W/" + ETAG}, id="if-match-weak-412"),
        pytest.param(
            "GET", {"if_unmodified_since": format_http_date(LM - 1)}, id="ius-earlier-412"
        ),
        pytest.param(
            "GET",
            {"if_match": '"other"', "range": "bytes=0-9"},
            id="412-takes-precedence-over-range",
        ),
    ],
)
def test_failed_precondition_is_412_plain_text(method, fields):
    plan = plan_file(_request(method, **fields), FACTS, close=False)
    status_line, head = _parse_head(plan.head())
    assert plan.status == 412
    assert status_line == "HTTP/1.1 412 Precondition Failed"
    assert plan.segments == (b"412 Precondition Failed\n",)
    assert int(_one(head, "content-length")) == plan.body_length == 24
    assert "content-range" not in head


def test_failed_precondition_for_head_has_no_body_but_content_length():
    plan = plan_file(_request("HEAD", if_match='"other"'), FACTS, close=False)
    _, head = _parse_head(plan.head())
    assert plan.status == 412
    assert plan.segments == ()
    assert _one(head, "content-length") == "24"


CONNECTION_FIELDS = [
    pytest.param({}, id="200"),
    pytest.param({"range": "bytes=0-9"}, id="206"),
    pytest.param({"range": "bytes=0-9,20-29"}, id="206-multipart"),
    pytest.param({"range": "bytes=5000-"}, id="416"),
    pytest.param({"if_none_match": ETAG}, id="304"),
    pytest.param({"if_match": '"x"'}, id="412"),
]


@pytest.mark.parametrize(
    ("version", "close", "expected"),
    [
        pytest.param("1.1", False, None, id="http11-keep-alive-no-connection-header"),
        pytest.param("1.1", True, "close", id="http11-close-says-close"),
        pytest.param("1.0", False, "keep-alive", id="http10-keep-alive-says-keep-alive"),
        pytest.param("1.0", True, "close", id="http10-close-says-close"),
    ],
)
@pytest.mark.parametrize("fields", CONNECTION_FIELDS)
def test_connection_header_reflects_close_and_http10_keep_alive(fields, version, close, expected):
    plan = plan_file(_request(version=version, **fields), FACTS, close=close)
    _, head = _parse_head(plan.head(version))
    assert plan.close is close
    if expected is None:
        assert "connection" not in head
    else:
        assert _one(head, "connection") == expected


@pytest.mark.parametrize("status", sorted(s for s in REASONS if s >= 400))
def test_plan_error_body_is_only_the_status_text(status):
    req = _request(target=b"/<script>\r\nX-Evil: 1", user_agent="evil\r\nX-Evil: 2")
    req.range = "bytes=0-1\r\nX-Evil: 3"
    plan = plan_error(status, req, close=False)
    status_line, head = _parse_head(plan.head())
    body = f"{status} {REASONS[status]}\n".encode()
    assert plan.status == status
    assert status_line == f"HTTP/1.1 {status} {REASONS[status]}"
    assert plan.segments == (body,)
    assert int(_one(head, "content-length")) == len(body) == plan.body_length
    assert _one(head, "content-type") == "text/plain; charset=utf-8"
    assert b"evil" not in plan.head().lower() and b"script" not in plan.head()
    assert not plan.uses_file


@pytest.mark.parametrize(
    ("request_", "close", "connection"),
    [
        pytest.param(None, True, "close", id="no-request-close"),
        pytest.param(None, False, None, id="no-request-keep-open"),
        pytest.param(_request(version="1.0"), False, "keep-alive", id="http10-keep-alive"),
        pytest.param(_request(), True, "close", id="http11-close"),
    ],
)
def test_plan_error_connection_header(request_, close, connection):
    version = request_.version if request_ is not None else "1.1"
    _, head = _parse_head(plan_error(400, request_, close=close).head(version))
    if connection is None:
        assert "connection" not in head
    else:
        assert _one(head, "connection") == connection


def test_plan_error_for_head_has_content_length_but_no_body():
    plan = plan_error(404, _request("HEAD"), close=False)
    _, head = _parse_head(plan.head())
    assert plan.segments == ()
    assert plan.body_length == 0
    assert _one(head, "content-length") == str(len(b"404 Not Found\n"))


def test_plan_error_extra_lines_are_included():
    plan = plan_error(405, _request("POST"), close=False, extra=(("Allow", "GET, HEAD"),))
    _, head = _parse_head(plan.head())
    assert _one(head, "allow") == "GET, HEAD"


@pytest.mark.parametrize(
    ("status", "extra", "content_length"),
    [
        pytest.param(301, (("Location", "dir/"),), "0", id="redirect-has-content-length-zero"),
        pytest.param(204, (), None, id="204-has-no-content-length"),
        pytest.param(304, (("ETag", ETAG),), None, id="304-has-no-content-length"),
    ],
)
def test_plan_no_content_has_no_body(status, extra, content_length):
    plan = plan_no_content(status, close=False, extra=extra)
    status_line, head = _parse_head(plan.head())
    assert plan.status == status
    assert status_line == f"HTTP/1.1 {status} {REASONS[status]}"
    assert plan.segments == ()
    assert plan.body_length == 0
    assert "content-type" not in head
    if content_length is None:
        assert "content-length" not in head
    else:
        assert _one(head, "content-length") == content_length
