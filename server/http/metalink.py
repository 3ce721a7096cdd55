"""Mirrors: Metalink/HTTP (RFC 6249) fields and Metalink 4 documents (RFC 5854). Pure.

``--mirror BASE_URL[;pri=N]`` names a server holding the same tree under ``BASE_URL``.
File responses then carry ``Link: <BASE/path>; rel=duplicate; pri=N`` for each mirror and
``Link: <name.meta4>; rel=describedby; type="application/metalink4+xml"``, and, when a
``Want-Digest`` asks for it and it is known, ``Digest: SHA-256=<base64>`` (RFC 3230, what
aria2c reads). ``GET path.meta4`` returns the Metalink 4 document: name, size, sha-256,
piece hashes, this server's URL and the mirrors', with their priorities.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

from .head import Fields

# XML escaping as xml.sax.saxutils does it, written out: importing that module pulls in
# urllib.request, http.client and email, 3.4 MiB of every worker's RSS for two functions.
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
)


def escape(text: str) -> str:
    """Character data: &, < and > as entities."""
    return text.translate(_TEXT)


def quoteattr(text: str) -> str:
    """An attribute value with its quotes: double quotes unless the value holds one and
    no single quote (then single), &quot; when it holds both."""
    text = text.translate(_ATTR)
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', "&quot;") + '"'


META4_SUFFIX = ".meta4"
META4_TYPE = "application/metalink4+xml"
# Piece hashes: at least 1 MiB each, and never more than this many for a file.
MIN_PIECE = 1024 * 1024
MAX_PIECES = 1024


@dataclass(frozen=True, slots=True)
class Mirror:
    base: str  # scheme://host[:port][/path], no trailing slash
    priority: int  # 1 is the most preferred (RFC 6249 §3.2, RFC 5854 §4.2.16)


def parse_mirror(spec: str, position: int) -> Mirror:
    """``BASE_URL`` or ``BASE_URL;pri=N``; the priority defaults to ``position`` (the CLI
    numbers mirrors from 2: this server is 1).
    Raises ValueError with a message."""
    base, _, rest = spec.strip().partition(";")
    base = base.strip().rstrip("/")
    scheme, sep, after = base.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not after.split("/")[0]:
        raise ValueError(f"not an http(s) URL: {spec!r}")
    if any(c in base for c in ' \t\r\n"<>?#'):
        raise ValueError(f"a mirror URL may hold no space, quote, query or fragment: {spec!r}")
    priority = position
    if rest:
        key, eq, value = rest.strip().partition("=")
        if key.strip().lower() != "pri" or not eq or not value.strip().isdigit():
            raise ValueError(f"expected ;pri=N after the URL: {spec!r}")
        priority = int(value)
        if not 1 <= priority <= 999999:
            raise ValueError(f"priority out of 1-999999: {spec!r}")
    return Mirror(base, priority)


def url_path(segments: tuple[str, ...]) -> str:
    """``/a/b%20c`` for the segments of a file under the served root."""
    return "".join("/" + quote(s, safe="!$&'()*+,;=:@-._~") for s in segments)


def link_fields(mirrors: tuple[Mirror, ...], segments: tuple[str, ...]) -> Fields:
    """The Link fields of a file response: its duplicates, and its Metalink document."""
    path = url_path(segments)
    name = quote(segments[-1], safe="!$&'()*+,;=:@-._~") if segments else ""
    fields: Fields = tuple(
        ("Link", f"<{m.base}{path}>; rel=duplicate; pri={m.priority}") for m in mirrors
    )
    return (*fields, ("Link", f'<{name}{META4_SUFFIX}>; rel=describedby; type="{META4_TYPE}"'))


def wants_sha256_digest(want_digest: str | None) -> bool:
    """Whether ``Want-Digest`` (RFC 3230 §4.3.1) asks for SHA-256 with a non-zero q."""
    if want_digest is None:
        return False
    for member in want_digest.split(","):
        name, _, params = member.strip().partition(";")
        if name.strip().lower() != "sha-256":
            continue
        q = params.strip().lower()
        if not q.startswith("q="):
            return True
        try:
            return float(q[2:]) > 0
        except ValueError:
            return True
    return False


def digest_field(digest: bytes) -> tuple[str, str]:
    """``Digest: SHA-256=<base64>`` (RFC 3230, RFC 5843)."""
    return ("Digest", "SHA-256=" + base64.b64encode(digest).decode("ascii"))


def piece_length(size: int) -> int:
    """The piece length of a file: a power of two from 1 MiB up, so that a file has at most
    MAX_PIECES pieces."""
    length = MIN_PIECE
    while size > length * MAX_PIECES:
        length *= 2
    return length


def meta4_document(
    name: str,
    size: int,
    digest: bytes,
    length: int,
    pieces: list[bytes],
    urls: list[tuple[str, int]],
) -> bytes:
    """A Metalink 4 document (RFC 5854) for one file."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<metalink xmlns="urn:ietf:params:xml:ns:metalink">',
        f"  <file name={quoteattr(name)}>",
        f"    <size>{size}</size>",
        f'    <hash type="sha-256">{digest.hex()}</hash>',
        f'    <pieces length="{length}" type="sha-256">',
        *(f"      <hash>{p.hex()}</hash>" for p in pieces),
        "    </pieces>",
        *(f'    <url priority="{pri}">{escape(url)}</url>' for url, pri in urls),
        "  </file>",
        "</metalink>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
