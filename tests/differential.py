"""Machinery for tests/test_differential_nginx.py, which judges; nothing here decides
whether a difference is allowed.

- ``StaticNginx``: nginx as a plain static server of a directory, run in the foreground
  under a prefix of its own and stopped by its PID.
- ``exchange``/``run_all``: one connection per request (one write, half-close, read to the
  close, bounded in time and bytes) and the first final status that came back.
- ``read_head``: the first request as RFC 9110/9112 spell it, every syntax violation named.
- ``name_target``: what a request-target names in the served tree (file, directory, FIFO,
  dotfile, symlink out of the root, ...), by our README's mapping rules.
- field grammars the judging needs: HTTP-date, byte ranges, entity-tags, Expect members.

Replaying one case by hand::

    data = differential.with_etag(case.data, CORPUS_ETAG, the_servers_etag_of_small_bin)
    print(asyncio.run(differential.exchange(port, data)), differential.read_head(data))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .nginxproc import Nginx

EXCHANGE_TIMEOUT = 2.0  # per connection: connect, send, read until the close
READ_CAP = 256 * 1024  # only the first status line matters: stop reading after this much

# The first response's status: three digits, or one of these.
NONE = "none"  # the connection closed (or timed out) without a byte
GARBAGE = "garbage"  # bytes came back, but not an HTTP/1.x status line (nginx's HTTP/0.9)

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [\x20-\x7e\x80-\xff]*)?")


def static_nginx_config(prefix: Path, port: int, root: Path) -> str:
    """nginx as a plain static file server of ``root``, everything under ``prefix``.

    Dotfiles and dot-directories are 404, as ours are by default; symlinks are followed
    (nginx's default), which the classifier accounts for.
    """
    # As root, workers must run as root to read pytest's 0700 temp dirs; otherwise nginx
    # cannot switch users, and the directive would only draw a warning.
    user = "user root;" if os.geteuid() == 0 else "# not root: workers keep our uid"
    temp = prefix / "temp"
    return f"""\
daemon off;
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{
        text/plain txt;
        text/html html;
        application/json json;
    }}
    default_type application/octet-stream;
    sendfile on;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
        }}
        location ~ /\\. {{
            return 404;
        }}
    }}
}}
"""


class StaticNginx(Nginx):
    """nginx as a plain static server of ``root`` (``static_nginx_config``)."""

    def __init__(self, prefix: Path, root: Path) -> None:
        super().__init__(prefix)
        self.root = root

    def start_static(self) -> StaticNginx:
        self.start(lambda port: static_nginx_config(self.prefix, port, self.root))
        return self


# --- one exchange per case --------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one connection got back: the first request's final status and its status line."""

    status: str  # "200", ..., NONE or GARBAGE
    status_line: bytes  # the line the status was read from (at most 200 bytes), or b""
    interim: tuple[str, ...]  # 1xx responses before it (nginx's 100 Continue)
    received: int  # bytes received in all
    timed_out: bool  # neither a close nor the read cap within EXCHANGE_TIMEOUT


def first_status(data: bytes) -> tuple[str, bytes, tuple[str, ...]]:
    """The first final response's status, its status line, and the interim (1xx) statuses
    before it: RFC 9110 §15.2 has a client read past those to the final response."""
    interim: list[str] = []
    pos = 0
    while True:
        if pos >= len(data):
            return NONE, b"", tuple(interim)
        line = data[pos:].split(b"\r\n", 1)[0][:200]
        m = _STATUS_LINE.fullmatch(line)
        if not m:
            return GARBAGE, line, tuple(interim)
        status = m.group(1).decode("ascii")
        end = data.find(b"\r\n\r\n", pos)
        if not status.startswith("1") or end < 0:
            return status, line, tuple(interim)
        interim.append(status)
        pos = end + 4


async def exchange(port: int, data: bytes, timeout: float = EXCHANGE_TIMEOUT) -> Answer:
    """Connect, send ``data`` in one write, half-close, and read until the close, the read
    cap or ``timeout``; a reset ends the read like a close (what came before it counts)."""
    received = bytearray()
    timed_out = False

    async def talk() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            with contextlib.suppress(OSError):  # a server may close before it read it all
                writer.write(data)
                await writer.drain()
                writer.write_eof()
            while len(received) < READ_CAP:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                received.extend(chunk)
        except ConnectionError:
            return
        finally:
            writer.transport.abort()

    try:
        await asyncio.wait_for(talk(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
    status, line, interim = first_status(bytes(received))
    return Answer(status, line, interim, len(received), timed_out)


async def run_all(port: int, requests: Sequence[bytes], concurrency: int) -> list[Answer]:
    """Each request on a connection of its own, at most ``concurrency`` at a time; the
    answers in the order of ``requests``."""
    answers: list[Answer | None] = [None] * len(requests)
    todo = iter(enumerate(requests))

    async def worker() -> None:
        for i, data in todo:
            answers[i] = await exchange(port, data)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [a for a in answers if a is not None]


def with_etag(data: bytes, corpus_etag: str, etag: str) -> bytes:
    """The case as a server gets it: the corpus's stand-in ETag of small.bin becomes the
    server's own (an entity tag is opaque and each server's own, RFC 9110 §8.8.3); the rest
    is byte for byte the same."""
    return data.replace(corpus_etag.encode("ascii"), etag.encode("ascii"))


# --- the first request, read the way RFC 9110/9112 spell it ----------------------------------
#
# The classifier judges each disagreement by what the request really is. So that a broad
# "malformed" category cannot hide a bug, this reader is strict (the ABNF, nothing more) and
# names each violation it finds; it never decides a status.

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 3986 §2: unreserved, sub-delims, ":" "@" "/" "?" and "%" (checked apart) may appear in a
# request-target; "[" "]" only in an authority. Anything else (CTLs, SP, obs-text, '"', "#",
# "<", ">", "\\", "^", "`", "{", "|", "}") may not.
TARGET_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://([^/?]*)(.*)", re.S)
# RFC 9112 §3.2 with RFC 3986 §3.2.2-3.2.3: uri-host [ ":" port ], possibly empty.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
# Methods our parser (llhttp) knows: we answer those 405, other tokens 501.
PARSER_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE PRI QUERY".split()
)


@dataclass
class Head:
    """The facts of the first request in what was sent; ``problems`` names every place it
    breaks RFC 9110/9112 syntax (empty when the head is well-formed)."""

    complete: bool = False  # the head's blank line came
    method_unfinished: bool = False  # all that came is a prefix of the method
    unfinished_field: tuple[bytes, bytes] | None = None  # a last field line cut short
    tab_ows: set[bytes] = field(default_factory=set)  # fields whose OWS holds a TAB
    trailing_ows: set[bytes] = field(default_factory=set)  # fields with OWS after the value
    content_complete: bool = True  # all the content the framing announces came too
    method: bytes = b""
    target: bytes = b""
    version: bytes = b""
    request_line: bytes = b""
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)  # (lower name, value)
    field_line_max: int = 0  # the longest field line, in bytes
    field_bytes: int = 0  # all field lines together
    problems: list[str] = field(default_factory=list)

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.fields if n == name]

    def has(self, name: bytes) -> bool:
        return any(n == name for n, _ in self.fields)

    def problem(self, *prefixes: str) -> bool:
        return any(p.startswith(prefixes) for p in self.problems)

    @property
    def version_number(self) -> tuple[int, int] | None:
        m = _VERSION.fullmatch(self.version)
        return (int(m.group(1)), int(m.group(2))) if m else None


def _lines(data: bytes) -> tuple[list[bytes], bytes, bool, int, list[str]]:
    """The head's complete lines (without their ends), an unfinished last line, whether the
    blank line came, where the content starts, and line-ending problems. Empty lines before
    the request line are skipped (RFC 9112 §2.2: a server SHOULD ignore at least one), as
    are bare CRs among them (as our parser does; they are still named)."""
    problems: list[str] = []
    pos = 0
    while data[pos : pos + 1] in (b"\r", b"\n"):
        if data.startswith(b"\r\n", pos) or data[pos:] == b"\r":
            pos += 2
            continue
        problems.append("bare CR" if data[pos] == 0x0D else "bare LF line ending")
        pos += 1
    lines: list[bytes] = []
    while True:
        lf = data.find(b"\n", pos)
        if lf < 0:
            partial = data[pos:]
            if b"\r" in partial[:-1]:
                problems.append("bare CR")
            return lines, partial, False, len(data), problems
        line = data[pos:lf]
        if line.endswith(b"\r"):
            line = line[:-1]
        else:
            problems.append("bare LF line ending")
        if b"\r" in line:
            problems.append("bare CR")
        pos = lf + 1
        if not line:
            return lines, b"", True, pos, problems
        lines.append(line)


def _check_target(head: Head) -> None:
    target, method = head.target, head.method
    bad = sorted(set(target) - TARGET_BYTES - set(b"[]"))
    if bad:
        head.problems.append(f"byte {bytes(bad[:1])!r} not allowed in a request-target")
    i = target.find(b"%")
    while i >= 0:
        if not (_HEX.issuperset(target[i + 1 : i + 3]) and len(target[i + 1 : i + 3]) == 2):
            head.problems.append("invalid percent-encoding in the target")
            break
        i = target.find(b"%", i + 3)
    if target.startswith(b"/"):
        if b"[" in target or b"]" in target:
            head.problems.append("byte b'[' not allowed in an origin-form target")
    elif target == b"*":
        if method != b"OPTIONS":
            head.problems.append("asterisk-form target without OPTIONS")
    elif (m := _ABSOLUTE.fullmatch(target)) is not None:
        _check_authority(head, m.group(1).lower(), m.group(2))
    elif method != b"CONNECT":
        head.problems.append("target is not origin-, absolute- or asterisk-form")


_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=]*")


def _check_authority(head: Head, scheme: bytes, authority: bytes) -> None:
    """RFC 3986 §3.2 with RFC 9110 §4.2: [userinfo "@"] host [":" port], where an http(s)
    URI MUST NOT have an empty host (a recipient MUST reject it) and ought not to carry
    userinfo."""
    _userinfo, at, hostport = authority.rpartition(b"@")
    if hostport.startswith(b"["):
        host, bracket, port = hostport.partition(b"]")
        host += bracket
        port = port[1:] if port.startswith(b":") else port
        bad_host = not bracket or not re.fullmatch(rb"\[[0-9A-Fa-f:.]+\]", host)
    else:
        host, _, port = hostport.partition(b":")
        bad_host = not _REG_NAME.fullmatch(host)
    web = scheme in (b"http", b"https")
    if bad_host:
        head.problems.append("invalid host in the target")
    elif web and not host:
        head.problems.append("http(s) URI with an empty host")
    if not port.isdigit() and port:
        head.problems.append("invalid port in the target")
    if web and at:
        head.problems.append("userinfo in an http(s) URI")


def _check_field_line(head: Head, line: bytes, first: bool, unfinished: bool) -> None:
    """One field line; an unfinished one only as far as it came."""
    if line[:1] in (b" ", b"\t"):
        head.problems.append(
            "whitespace before the first field line" if first else "obsolete line folding"
        )
        return
    name, colon, value = line.partition(b":")
    if not colon:
        if not unfinished:
            head.problems.append("field line without a colon")
        elif not TCHAR.issuperset(name):
            head.problems.append("field name is not a token")
        return
    if name != name.rstrip(b" \t"):
        head.problems.append("whitespace between field name and colon")
    elif not name or not TCHAR.issuperset(name):
        head.problems.append("field name is not a token")
    lname = name.strip(b" \t").lower()
    if b"\t" in value[: len(value) - len(value.lstrip(b" \t"))]:
        head.tab_ows.add(lname)
    if not unfinished and value.strip(b" \t") and value[-1:] in (b" ", b"\t"):
        head.trailing_ows.add(lname)
        if value.rstrip(b" ")[-1:] == b"\t" or value.endswith(b"\t"):
            head.tab_ows.add(lname)
    value = value.strip(b" \t")
    if b"\x00" in value:
        head.problems.append("NUL in a field value")
    elif any((c < 0x20 and c != 0x09) or c == 0x7F for c in value.replace(b"\r", b"")):
        head.problems.append("control character in a field value")
    if unfinished:
        head.unfinished_field = (lname, value)
    else:
        head.fields.append((lname, value))


def _check_fields(head: Head, lines: list[bytes], partial: bytes) -> None:
    for k, line in enumerate(lines):
        head.field_line_max = max(head.field_line_max, len(line))
        head.field_bytes += len(line) + 2
        _check_field_line(head, line, first=k == 0, unfinished=False)
    if partial:
        head.field_line_max = max(head.field_line_max, len(partial))
        head.field_bytes += len(partial)
        # A line that came up to its CR is whole but for the LF: judge it whole.
        ended = partial.endswith(b"\r")
        _check_field_line(head, partial.rstrip(b"\r"), first=not lines, unfinished=not ended)
    lengths = head.values(b"content-length")
    if head.unfinished_field and head.unfinished_field[0] == b"content-length":
        # Its digits so far are a lower bound of the length; anything else is invalid.
        lengths = [*lengths, head.unfinished_field[1] or b"0"]
    if lengths and not all(v.isdigit() for v in lengths):
        head.problems.append("invalid Content-Length")
    elif len(lengths) > 1:
        head.problems.append("more than one Content-Length")
    codings = head.values(b"transfer-encoding")
    if head.unfinished_field and head.unfinished_field[0] == b"transfer-encoding":
        codings = [*codings, head.unfinished_field[1]]
    if codings and lengths:
        head.problems.append("Transfer-Encoding with Content-Length")
    if codings and head.version_number == (1, 0):
        head.problems.append("Transfer-Encoding in HTTP/1.0")
    listed = [c.strip(b" \t").lower() for c in b",".join(codings).split(b",")]
    listed = [c for c in listed if c]
    if b"chunked" in listed[:-1]:
        # Whatever follows, chunked is applied twice or is not the final coding (RFC 9112
        # §6.1, §7): a coding after it is already a fault.
        head.problems.append("Transfer-Encoding whose final coding is not chunked")
    hosts = head.values(b"host")
    if len(hosts) > 1:
        head.problems.append("more than one Host")
    elif hosts and not _HOST.fullmatch(hosts[0]):
        head.problems.append("invalid Host")


def _check_framing(head: Head, rest: bytes) -> None:
    """Once the head is complete: a missing Host (RFC 9112 §3.2), Transfer-Encoding (RFC
    9112 §6.1), and whether the content the framing announces came, well-formed."""
    if not head.has(b"host") and head.version_number == (1, 1):
        head.problems.append("HTTP/1.1 without Host")
    lengths = head.values(b"content-length")
    if head.has(b"transfer-encoding"):
        codings = b",".join(head.values(b"transfer-encoding"))
        listed = [c.strip(b" \t").lower() for c in codings.split(b",")]
        last = next((c for c in reversed(listed) if c), b"")  # empty elements do not count
        if last != b"chunked" and not head.problem("Transfer-Encoding whose final"):
            head.problems.append("Transfer-Encoding whose final coding is not chunked")
        else:
            head.content_complete, problem = _read_chunked(rest)
            if problem:
                head.problems.append(f"Transfer-Encoding: chunked, {problem}")
    elif lengths and all(v.isdigit() for v in lengths):
        head.content_complete = len(rest) >= number(lengths[0])


def number(digits: bytes) -> int:
    """A decimal number of any length (Python's int() refuses more than 4300 digits); those
    beyond 40 digits all count as 10**40."""
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 40 else 10**40


_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"[^\"]*\"))?)*"
)


def _read_chunked(rest: bytes) -> tuple[bool, str]:
    """RFC 9112 §7.1: whether ``rest`` holds the whole chunked content (last chunk and
    trailer section included), and the first framing error in it ("" if none)."""
    pos = 0
    while True:
        lf = rest.find(b"\n", pos)
        if lf < 0:
            return False, ""
        line = rest[pos:lf]
        if not line.endswith(b"\r"):
            return True, "bare LF after a chunk size"
        size, semi, ext = line[:-1].partition(b";")
        if semi:
            size = size.rstrip(b" \t")
        if not size or not _HEX.issuperset(size) or not _CHUNK_EXT.fullmatch(semi + ext):
            return True, "invalid chunk size line"
        n = int(size[-40:], 16) if len(size.lstrip(b"0")) <= 40 else 1 << 160
        pos = lf + 1
        if n == 0:
            while True:  # the trailer section, up to its blank line
                lf = rest.find(b"\n", pos)
                if lf < 0:
                    return False, ""
                if lf == pos or rest[lf - 1 : lf] != b"\r":
                    return True, "bare LF in the trailer section"
                if lf == pos + 1:
                    return True, ""
                name, colon, _ = rest[pos : lf - 1].partition(b":")
                if not colon or not name or not TCHAR.issuperset(name):
                    return True, "invalid trailer field line"
                pos = lf + 1
        after = rest[pos + n : pos + n + 2]
        if not b"\r\n".startswith(after):
            return True, "chunk data not followed by CRLF"
        if len(after) < 2:
            return False, ""
        pos += n + 2


def _check_request_line(head: Head, line: bytes) -> None:
    head.request_line = line
    words = line.split(b" ")
    if len(words) != 3 or not all(words):
        head.problems.append("request line is not method SP target SP version")
    head.method = words[0]
    head.target = words[1] if len(words) > 1 else b""
    head.version = words[2] if len(words) == 3 else b""
    if not head.method or not TCHAR.issuperset(head.method):
        head.problems.append("method is not a token")
    if head.target:
        _check_target(head)
    if head.version and not _VERSION.fullmatch(head.version):
        head.problems.append("version is not HTTP/DIGIT.DIGIT")


_VERSION_SHAPE = b"HTTP/0.0"


def _could_become_version(prefix: bytes) -> bool:
    """Whether an unfinished version can still end as HTTP/DIGIT.DIGIT."""
    if len(prefix) > len(_VERSION_SHAPE):
        return False
    for got, want in zip(prefix, _VERSION_SHAPE, strict=False):
        if (want == 0x30 and not 0x30 <= got <= 0x39) or (want != 0x30 and got != want):
            return False
    return True


def _could_become_our_target(prefix: bytes) -> bool:
    """Whether an unfinished target can still end as origin-form, asterisk-form or an
    http(s) URI (anything else is refused: 400)."""
    lower = prefix.lower()
    return prefix[:1] in (b"/", b"*") or any(
        lower.startswith(p) or p.startswith(lower) for p in (b"http://", b"https://")
    )


def _check_unfinished_request_line(head: Head, partial: bytes) -> None:
    """A request line whose end has not come, judged only where it is already wrong."""
    if partial.endswith(b"\r"):  # all of it but the LF: judge it whole
        _check_request_line(head, partial[:-1])
        return
    words = partial.split(b" ")
    head.method = words[0]
    head.method_unfinished = len(words) == 1
    if not TCHAR.issuperset(head.method) or (len(words) > 1 and not head.method):
        head.problems.append("method is not a token")
    if len(words) > 1 and set(words[1]) - TARGET_BYTES - set(b"[]"):
        head.problems.append("byte not allowed in a request-target")
    if len(words) > 1:
        head.target = words[1]
        if words[1] and not _could_become_our_target(words[1]):
            head.problems.append("target can only become another scheme's URI")
    if len(words) > 3 or (len(words) == 3 and not words[1]):
        head.problems.append("request line is not method SP target SP version")
    elif len(words) == 3:
        head.version = words[2]
        if not _could_become_version(words[2]):
            head.problems.append("version is not HTTP/DIGIT.DIGIT")


def read_head(data: bytes) -> Head:
    """The first request in ``data``, with every syntax violation named. What has not
    ended yet (the request line, the last field line) is judged only where it is already
    wrong."""
    head = Head()
    lines, partial, head.complete, body_at, head.problems = _lines(data)
    if lines:
        _check_request_line(head, lines[0])
        _check_fields(head, lines[1:], partial)
    elif partial:
        _check_unfinished_request_line(head, partial)
    if head.complete:
        _check_framing(head, data[body_at:])
    return head


# --- what a target names in the served tree ---------------------------------------------------


@dataclass(frozen=True)
class Named:
    """What the first request's target names, by our README's mapping rules: decoded once,
    ``\\`` a separator, dot segments removed without climbing above the root."""

    kind: str  # see KINDS
    above_root: bool = False  # a ".." segment tried to climb above the root
    trailing_slash: bool = False
    size: int = -1  # a regular file's size


KINDS = (
    "file",  # a regular file
    "dir-with-index",
    "dir-without-index",
    "special",  # a FIFO, device or socket
    "dotfile",  # a dotfile or dot-directory on the way, or a symlink to one
    "outside",  # a symlink out of the root
    "missing",  # nothing there (or a file asked for with a trailing slash)
    "undecodable",  # invalid percent-encoding, NUL, or not UTF-8 once decoded
    "none",  # no target to map (asterisk-form, authority-form, no request line)
)


def target_path(target: bytes) -> bytes | None:
    """The path of an origin-form or absolute-form target, without query or fragment."""
    if target.startswith(b"/"):
        path = target
    else:
        m = _ABSOLUTE.fullmatch(target)
        if not m:
            return None
        path = m.group(3) or b"/"
        if not path.startswith(b"/"):
            path = b"/" + path
    return re.split(rb"[?#]", path, maxsplit=1)[0]


def _decode(path: bytes) -> str | None:
    out = bytearray()
    i = 0
    while i < len(path):
        if path[i] == 0x25:  # "%"
            pair = path[i + 1 : i + 3]
            if len(pair) != 2 or not _HEX.issuperset(pair):
                return None
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(path[i])
            i += 1
    if 0 in out:
        return None
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def name_target(root: Path, target: bytes) -> Named:
    path = target_path(target)
    if path is None:
        return Named("none")
    text = _decode(path)
    if text is None:
        return Named("undecodable")
    trailing = text.endswith(("/", "\\", "/.", "/.."))
    segments: list[str] = []
    above = False
    for seg in re.split(r"[/\\]", text):
        if seg in ("", "."):
            continue
        if seg == "..":
            above = above or not segments
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    if any(seg.startswith(".") for seg in segments):
        return Named("dotfile", above, trailing)
    real_root = os.path.realpath(root)
    where = Path(root, *segments)
    if not os.path.lexists(where):
        return Named("missing", above, trailing)
    real = os.path.realpath(where)
    if os.path.commonpath([real, real_root]) != real_root:
        return Named("outside", above, trailing)
    if any(p.startswith(".") for p in Path(os.path.relpath(real, real_root)).parts):
        return Named("dotfile", above, trailing)
    st = os.stat(real)
    if stat.S_ISDIR(st.st_mode):
        index = Path(real, "index.html")
        kind = "dir-with-index" if index.is_file() else "dir-without-index"
        return Named(kind, above, trailing)
    if trailing:
        return Named("missing", above, trailing)
    if stat.S_ISREG(st.st_mode):
        return Named("file", above, trailing, st.st_size)
    return Named("special", above, trailing)


# --- field grammars the classifier needs (RFC 9110) -------------------------------------------

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"[0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
_HTTP_DATE = re.compile(
    rf"{_DAY}, [0-9]{{2}} {_MONTH} [0-9]{{4}} {_TIME} GMT"  # IMF-fixdate
    rf"|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"[0-9]{{2}}-{_MONTH}-[0-9]{{2}} {_TIME} GMT"  # rfc850-date
    rf"|{_DAY} {_MONTH} [0-9 ][0-9] {_TIME} [0-9]{{4}}"  # asctime-date
)
_INT_RANGE = re.compile(rb"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(rb"-[0-9]+")


def is_http_date(values: list[bytes]) -> bool:
    """One field line holding one HTTP-date (RFC 9110 §5.6.7)."""
    return len(values) == 1 and _HTTP_DATE.fullmatch(values[0].decode("latin-1")) is not None


def byte_range_specs(values: list[bytes]) -> list[bytes] | None:
    """The range-specs of one valid ``Range: bytes=...`` field line (RFC 9110 §14.1.1-14.1.2:
    int-range with first-pos <= last-pos, or suffix-range, in a list that may hold empty
    elements), or None when there is not exactly one or it is not valid."""
    if len(values) != 1:
        return None
    unit, eq, spec = values[0].partition(b"=")
    if not eq or unit.lower() != b"bytes":
        return None
    specs = [s.strip(b" \t") for s in spec.split(b",")]
    if spec[:1] in (b" ", b"\t") or spec[-1:] in (b" ", b"\t"):
        return None
    out = []
    for s in specs:
        if not s:
            continue
        m = _INT_RANGE.fullmatch(s)
        if m:
            if m.group(2) and number(m.group(2)) < number(m.group(1)):
                return None
        elif not _SUFFIX_RANGE.fullmatch(s):
            return None
        out.append(s)
    return out or None


def expectations(head: Head) -> list[bytes]:
    """The members of the Expect field lines, lower-cased; empty list elements do not count
    (RFC 9110 §5.6.1.2)."""
    joined = b",".join(head.values(b"expect"))
    return [m.strip(b" \t").lower() for m in joined.split(b",") if m.strip(b" \t")]


_ENTITY_TAG = re.compile(rb'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')


def is_entity_tag(value: bytes, strong: bool = False) -> bool:
    """One entity-tag (RFC 9110 §8.8.3), and nothing else."""
    return _ENTITY_TAG.fullmatch(value) is not None and not (strong and value.startswith(b"W/"))


def is_entity_tag_list(value: bytes) -> bool:
    """``"*" / #entity-tag`` (RFC 9110 §13.1.1-13.1.2), empty list elements allowed."""
    if value == b"*":
        return True
    members = [m.strip(b" \t") for m in value.split(b",")]
    return all(is_entity_tag(m) for m in members if m) and any(members)
