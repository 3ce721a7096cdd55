"""No response-header injection and no log forging, checked on the raw bytes.

Whatever a request carries (percent-encoded CR/LF, raw bytes >= 0x80, quotes, markup), the
response head is exactly the field lines the server means to send, a ``Location`` is a
plain URI-reference, and the access log gets at most one line per request, escaped.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urljoin, urlsplit

import pytest

from .rawhttp import connect
from .serverproc import ServerProcess

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [A-Za-z][A-Za-z ]*")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"): ([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)")
# RFC 3986 URI-reference characters: unreserved, reserved and "%". No space, no quote, no
# "<" ">" "\" "^" "`" "{" "|" "}", no control byte, nothing outside ASCII.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

BASE = {"Date", "Server"}
REDIRECT = BASE | {"Location", "Content-Length"}
ERROR = BASE | {"Content-Type", "Content-Length"}
ERROR_CLOSE = ERROR | {"Connection"}
FILE = BASE | {"Content-Type", "Content-Length", "Accept-Ranges", "Last-Modified", "ETag"}


# --- raw exchange and strict head parsing -----------------------------------------------


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Send ``data``; the raw head (without the blank line) and body of the first response."""
    with connect(port, timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed without a complete head: {buf!r}"
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length: (\d+)\r?$", head)
        length = int(m.group(1)) if m else 0
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head, body


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status and field lines, asserting every line is well formed: no bare CR or LF, no
    line that is not ``token: value`` with printable ASCII."""
    lines = head.split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, head
    m = _STATUS_LINE.fullmatch(lines[0])
    assert m, head
    fields = []
    for line in lines[1:]:
        fm = _FIELD_LINE.fullmatch(line)
        assert fm, f"not a field line: {line!r} in {head!r}"
        fields.append((fm.group(1).decode("ascii"), fm.group(2).decode("ascii")))
    return int(m.group(1)), fields


def field(fields: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in fields if k.lower() == name.lower()]
    assert len(values) == 1, (name, fields)
    return values[0]


def assert_clean_location(location: str) -> None:
    assert _URI_CHARS.fullmatch(location), location
    assert not any(c in location for c in ' "<>\r\n\t'), location


def request(target: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


# --- 301 Location on the shared tree (all three send paths) -----------------------------

REDIRECTS = [
    (b"/dir", "dir/"),
    (b"/noindex", "noindex/"),
    (b"/linkdir-inside", "linkdir-inside/"),
    (b"/dir?q=%0d%0aSet-Cookie:%20a=1", "dir/?q=%0d%0aSet-Cookie:%20a=1"),
    (b"/dir?q=%0D%0A%0D%0A%3Cscript%3E", "dir/?q=%0D%0A%0D%0A%3Cscript%3E"),
    (b'/dir?a="b"', "dir/?a=%22b%22"),
    (b"/dir?<script>alert(1)</script>", "dir/?%3Cscript%3Ealert(1)%3C/script%3E"),
    (b"/dir?a%20b", "dir/?a%20b"),
    (b"/dir?{}|^`\\", "dir/?%7B%7D%7C%5E%60%5C"),
    (b"/%64ir", "dir/"),
    (b"/dir/../noindex", "/noindex/"),
    (b"//dir", "/dir/"),
    (b"/./dir?x=%0a", "/dir/?x=%0a"),
    (b"/dir%2f..%2fnoindex", "/noindex/"),
    (b"http://evil.example/dir?x=%0d%0a", "dir/?x=%0d%0a"),
]


@pytest.mark.parametrize(
    "target, location", REDIRECTS, ids=[t.decode("latin-1") for t, _ in REDIRECTS]
)
def test_directory_redirect_has_a_clean_location_and_no_extra_field(server, target, location):
    head, body = raw_exchange(server.port, request(target))
    status, fields = parse_head(head)
    assert status == 301
    assert sorted(k for k, _ in fields) == sorted(REDIRECT), head
    assert field(fields, "Content-Length") == "0"
    assert body == b""
    got = field(fields, "Location")
    assert_clean_location(got)
    assert got == location
    assert "evil" not in got  # an absolute-form target's authority is never echoed


REFUSED = [
    # Percent-encoded CR/LF in the path decode into a name that does not exist.
    (b"/dir%0d%0aSet-Cookie:%20a=1", 404, ERROR),
    (b"/hello.txt%0D%0AX-Injected:%201", 404, ERROR),
    (b"/%0d%0a%0d%0a<html>", 404, ERROR),
    (b"/dir%22%3E%3Cscript%3E", 404, ERROR),
    # Raw bytes >= 0x80 and raw controls: llhttp refuses them in a request-target.
    (b"/dir\x80", 400, ERROR_CLOSE),
    (b"/dir?q=\xff\xfe", 400, ERROR_CLOSE),
    (b"/\xc3\xbcn\xc3\xafcode.txt", 400, ERROR_CLOSE),
    (b"/dir?\x7f", 400, ERROR_CLOSE),
    (b"/dir\x0dSet-Cookie:", 400, ERROR_CLOSE),
]


@pytest.mark.parametrize(
    "target, status, names", REFUSED, ids=[t.decode("latin-1") for t, _, _ in REFUSED]
)
def test_refused_targets_add_no_field(server, target, status, names):
    head, body = raw_exchange(server.port, request(target))
    got, fields = parse_head(head)
    assert got == status
    assert sorted(k for k, _ in fields) == sorted(names), head
    assert body.startswith(str(status).encode()) and b"<" not in body and b"dir" not in body


FIELD_NOISE = [
    b"Range: bytes=0-4%0d%0aX-Injected: 1\r\n",
    b'If-None-Match: "a\r\n',
    b'If-None-Match: "\xe9"\r\n',
    b'If-Range: "x\xff"\r\nRange: bytes=0-1\r\n',
    b'User-Agent: \xe9<script>"\r\nReferer: %0d%0aX: y\r\n',
    b"X-Forwarded-Host: evil.example\r\n",
]


@pytest.mark.parametrize("extra", FIELD_NOISE, ids=range(len(FIELD_NOISE)))
def test_request_fields_are_never_echoed(server, tree, extra):
    head, body = raw_exchange(server.port, request(b"/hello.txt", extra))
    status, fields = parse_head(head)
    assert status == 200
    assert sorted(k for k, _ in fields) == sorted(FILE), head
    assert body == tree.files["hello.txt"]
    assert b"evil" not in head and b"nject" not in head and b"script" not in head


# --- odd directory names in a tree of our own --------------------------------------------

ODD_DIRS = [
    'a"b<c>',
    "sp ace",
    "\u00fcn\u00ef",
    "x\r\nSet-Cookie: a=1",
    "q?h#f",
    "tick`{|}^",
    "pct%41",
    "del\x7fx",
    "c:olon",
    "it's",
    "tab\tx",
    "<img src=x onerror=alert(1)>",
]


@pytest.fixture(scope="module")
def odd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("odd")
    root = base / "root"
    for name in ODD_DIRS:
        (root / name).mkdir(parents=True)
        (root / name / "index.html").write_bytes(name.encode("utf-8"))
    with ServerProcess(root, ["--access-log", "off"], logdir=base / "logs") as srv:
        yield srv


@pytest.mark.parametrize("prefix, query", [("/", ""), ("/./", ""), ("/", "?q=%0d%0a%22<>")])
@pytest.mark.parametrize("name", ODD_DIRS, ids=[repr(n) for n in ODD_DIRS])
def test_odd_directory_names_redirect_cleanly_and_correctly(odd_server, name, prefix, query):
    path = prefix + quote(name, safe="")
    head, body = raw_exchange(odd_server.port, request((path + query).encode("ascii")))
    status, fields = parse_head(head)
    assert status == 301
    assert sorted(k for k, _ in fields) == sorted(REDIRECT), head
    location = field(fields, "Location")
    assert_clean_location(location)
    assert location.endswith(
        "/" + query.replace('"', "%22").replace("<", "%3C").replace(">", "%3E")
    )
    # Following the Location (as a browser resolves it) lands on the directory's index.
    followed = urlsplit(urljoin("http://x" + path, location))
    target = followed.path + ("?" + followed.query if followed.query else "")
    head, body = raw_exchange(odd_server.port, request(target.encode("ascii")))
    assert parse_head(head)[0] == 200, (location, target)
    assert body == name.encode("utf-8")


# --- the access log: one escaped line per request -----------------------------------------

_LOG_FIELD = rb"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9A-F]{2})*"
_LOG_LINE = re.compile(
    rb"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
    rb'"(' + _LOG_FIELD + rb')" (\d{3}) (\d+|-) "(' + _LOG_FIELD + rb')" "(' + _LOG_FIELD + rb')"'
)


def _sentinel(server: ServerProcess) -> bytes:
    """Request a unique URL and wait for its log line; returns the line's marker."""
    marker = f"sentinel-{uuid.uuid4().hex}"
    raw_exchange(server.port, request(f"/hello.txt?{marker}".encode()))
    server.wait_for_log(marker, stream="stdout")
    return marker.encode()


def lines_logged_for(server: ServerProcess, send: bytes) -> tuple[list[bytes], bytes]:
    """The access-log lines written between two sentinel requests around ``send``, and
    what the server answered to ``send``."""
    before = _sentinel(server)
    answer = b""
    with connect(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(send)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # a refused request: the response is not what this looks at
    after = _sentinel(server)
    log = server.stdout_path.read_bytes()
    # Nothing anywhere in the log is a raw control byte or outside ASCII.
    assert re.fullmatch(rb"[\x20-\x7e\n]*", log), [
        c for c in log if not 0x20 <= c < 0x7F and c != 10
    ][:5]
    lines = log.split(b"\n")
    start = next(i for i, ln in enumerate(lines) if before in ln)
    end = next(i for i, ln in enumerate(lines) if after in ln)
    between = lines[start + 1 : end]
    for line in between:
        assert _LOG_LINE.fullmatch(line), line
    return between, answer


def the_line(logged: tuple[list[bytes], bytes]) -> re.Match[bytes]:
    lines, _ = logged
    assert len(lines) == 1, lines
    m = _LOG_LINE.fullmatch(lines[0])
    assert m, lines[0]
    return m


def test_quote_and_backslash_in_target_are_escaped_in_one_line(server):
    m = the_line(lines_logged_for(server, request(b'/hello.txt?q="x"&r=\\')))
    assert m.group(1) == rb"GET /hello.txt?q=\x22x\x22&r=\x5C HTTP/1.1"
    assert m.group(2) == b"200"


def test_percent_encoded_crlf_in_target_stays_in_one_line(server):
    target = b"/hello.txt?%0d%0a127.0.0.1%20-%20-%20forged"
    m = the_line(lines_logged_for(server, request(target)))
    assert m.group(1) == b"GET " + target + b" HTTP/1.1"


@pytest.mark.parametrize(
    "name, value, escaped",
    [
        (b"User-Agent", b'a\x80\xffb"c\\d', rb"a\x80\xFFb\x22c\x5Cd"),
        (b"User-Agent", b'x" 200 13 "-" "forged', rb"x\x22 200 13 \x22-\x22 \x22forged"),
        (b"User-Agent", b"caf\xc3\xa9\ttab", rb"caf\xC3\xA9\x09tab"),
        (b"Referer", b'http://r/\xe9"', rb"http://r/\xE9\x22"),
    ],
    ids=["obs-text", "forged-fields", "utf8-tab", "referer"],
)
def test_header_bytes_are_escaped_in_one_line(server, name, value, escaped):
    m = the_line(lines_logged_for(server, request(b"/hello.txt", name + b": " + value + b"\r\n")))
    assert m.group(2) == b"200"
    assert (m.group(5) if name == b"User-Agent" else m.group(4)) == escaped


REJECTED = [
    request(b"/hello.txt?\x80\xff"),
    request(b"/hello\x80.txt"),
    request(b"/hello.txt", b"User-Agent: a\x7fb\r\n"),
    request(b"/hello.txt", b"User-Agent: a\x01b\r\n"),
    request(b"/hello.txt", b"Referer: \x7f\x80\r\n"),
    request(b"/hello.txt", b"User-Agent: a\rb\r\n"),
]
REJECTED_IDS = ["target-high", "path-high", "ua-del", "ua-ctl", "referer-del-high", "ua-bare-cr"]
TOO_MANY_FIELDS = request(b"/hello.txt", b"X-A: 1\r\n" * 101)  # 431


@pytest.mark.parametrize("data", REJECTED, ids=REJECTED_IDS)
def test_rejected_bytes_never_reach_the_log_raw(server, data):
    """llhttp refuses these with 400; whatever is logged (if anything) is one escaped line."""
    lines, answer = lines_logged_for(server, data)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert len(lines) <= 1, lines  # (the raw-byte check is in lines_logged_for)


@pytest.mark.parametrize(
    "data, status",
    [*((d, b"400") for d in REJECTED[:3]), (TOO_MANY_FIELDS, b"431")],
    ids=[*REJECTED_IDS[:3], "too-many-fields"],
)
def test_rejected_request_gets_one_access_log_line(server, data, status):
    m = the_line(lines_logged_for(server, data))
    assert m.group(2) == status


def test_log_stays_ascii_after_everything(server):
    """A last look at the whole log this server wrote during the module."""
    _sentinel(server)
    log = server.stdout_path.read_bytes()
    assert re.fullmatch(rb"[\x20-\x7e\n]*", log)
    for line in log.split(b"\n")[1:]:
        assert not line or _LOG_LINE.fullmatch(line), line
