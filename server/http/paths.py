"""From a request-target to a normalized path inside the served root (pure, no I/O).

Security truths, stated plainly:

* The path is percent-decoded exactly once. ``%252e%252e`` is the file named ``%2e%2e``,
  never ``..``.
* Decoding happens before normalization, so ``%2e%2e``, ``..%2f`` and ``..%5c`` are dot
  segments like any other, and dot segments can never climb above the root: ``/../x`` is
  ``/x``. Backslashes are separators, as they are for the Windows clients that send them.
* The result is a tuple of segments with no ``""``, ``"."`` or ``".."`` in it and no NUL;
  joining it under the root cannot leave the root by name. Symlinks can, which is why the
  file layer (``lookup.py``) checks the real path of what it opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

STATUS_BAD_REQUEST = 400

_HEX = frozenset(b"0123456789abcdefABCDEF")
# Characters left as they are in a path segment we emit: RFC 3986 pchar minus "%", and
# minus ":", which in a relative reference's first segment would read as a scheme (§4.2).
_SEGMENT_SAFE = "!$&'()*+,;=@-._~"
# In a query we re-emit, "%" stays: the client's escapes are kept, not doubled.
_QUERY_SAFE = "!$&'()*+,;=:@-._~/?%"


class TargetError(Exception):
    """A request-target that cannot name a file; ``status`` is what the client gets."""

    def __init__(self, reason: str, status: int = STATUS_BAD_REQUEST) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestPath:
    segments: tuple[str, ...]  # decoded, normalized; () is the root
    trailing_slash: bool  # the decoded path ended with "/"
    query: bytes  # raw query string without "?", b"" when absent
    canonical: bool  # the raw path already was its normalized form (relative links work)

    @property
    def hidden(self) -> bool:
        """A dotfile or a dot-directory is on the way (``.env``, ``.git/config``)."""
        return any(s.startswith(".") for s in self.segments)


def percent_decode(raw: bytes) -> bytes:
    """Decode ``%XX`` escapes once; a ``%`` not followed by two hex digits is an error."""
    if b"%" not in raw:
        return raw
    pieces = raw.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            raise TargetError("invalid percent-encoding")
        out.append(bytes((int(piece[:2], 16),)))
        out.append(piece[2:])
    return b"".join(out)


# RFC 3986 §3.2.2-3.2.3: host [ ":" port ], a host being an IP-literal in brackets or a
# reg-name (unreserved, pct-encoded, sub-delims), a port digits. The one authority rule:
# the Host field (RFC 9112 §3.2) and absolute-form targets are checked by it.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?", re.ASCII)


def valid_authority(text: str, host_required: bool = False) -> bool:
    """Whether ``text`` is ``host[:port]`` (RFC 3986); an empty host only if allowed (a
    Host field may be empty, an http(s) URI's host may not: RFC 9110 §4.2.1)."""
    m = _AUTHORITY.fullmatch(text)
    return m is not None and (bool(m.group(1)) or not host_required)


def origin_form(target: bytes) -> bytes:
    """An absolute-form target (``http://host/p?q``) as origin-form (``/p?q``); an
    origin-form one as it is (RFC 9112 §3.2). TargetError for any other form."""
    if target[:1] == b"/":
        return target
    lowered = target[:8].lower()
    if not lowered.startswith((b"http://", b"https://")):
        raise TargetError("unsupported request-target form")
    rest = target[target.index(b"//") + 2 :]
    cut = len(rest)
    for sep in (b"/", b"?", b"#"):
        pos = rest.find(sep)
        if 0 <= pos < cut:
            cut = pos
    if not valid_authority(rest[:cut].decode("latin-1"), host_required=True):
        raise TargetError("invalid authority in an absolute-form target")
    return b"/" + rest[cut:] if rest[cut : cut + 1] != b"/" else rest[cut:]


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, raw query) of an origin-form or absolute-form target (RFC 9112 §3.2)."""
    target = origin_form(target)
    hash_at = target.find(b"#")
    if hash_at >= 0:
        target = target[:hash_at]
    path, _, query = target.partition(b"?")
    return path, query


def parse_target(target: bytes) -> RequestPath:
    """Decode and normalize a request-target. Raises TargetError (400) on bad input."""
    raw_path, query = split_target(target)
    decoded = percent_decode(raw_path)
    if b"\x00" in decoded:
        raise TargetError("NUL byte in path")
    try:
        text = decoded.decode("utf-8")  # strict: rejects overlong forms such as %c0%ae
    except UnicodeDecodeError:
        raise TargetError("path is not UTF-8") from None
    text = text.replace("\\", "/")
    segments: list[str] = []
    for seg in text.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    # RFC 3986 §5.2.4: a final "." or ".." segment leaves the path ending in "/" ("/a/."
    # is "/a/", "/a/b/.." is "/a/"): a file is no directory, whatever the raw text says.
    trailing = text.endswith("/") or text.rsplit("/", 1)[-1] in (".", "..")
    normalized = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    lowered = raw_path.lower()
    # A client resolving a relative Location sees the raw path: raw or encoded separators
    # that we split on, and it does not, make a relative reference land elsewhere.
    canonical = (
        normalized == text
        and b"\\" not in raw_path
        and b"%2f" not in lowered
        and b"%5c" not in lowered
    )
    return RequestPath(tuple(segments), trailing, query, canonical)


def quote_segment(segment: str) -> str:
    """Percent-encode one decoded segment for a URL we emit (UTF-8, RFC 3986 pchar)."""
    return quote(segment, safe=_SEGMENT_SAFE)


def quote_query(query: bytes) -> str:
    """Re-encode a raw query so that no byte outside RFC 3986 ``query`` is echoed."""
    return quote(query, safe=_QUERY_SAFE)


def directory_redirect(path: RequestPath, prefix: str = "") -> str:
    """The Location for a directory requested without its trailing slash.

    Relative (``name/``) when the request path was canonical, so it stays right behind a
    proxy that strips a prefix; otherwise an absolute path (under ``prefix``), since a
    reference relative to a path with dot segments or encoded slashes resolves elsewhere.
    """
    if path.canonical and path.segments:
        location = quote_segment(path.segments[-1]) + "/"
    else:
        location = prefix + "".join("/" + quote_segment(s) for s in path.segments) + "/"
    if path.query:
        location += "?" + quote_query(path.query)
    return location


def strip_root_path(target: bytes, prefix: bytes) -> bytes | None:
    """The target without a leading mount ``prefix`` (e.g. ``b"/files"``).

    Proxies are set up both ways, stripping the prefix or passing it on, so both are
    accepted: a target without the prefix comes back unchanged (a top-level directory
    named like the prefix is then shadowed, as documented). None means the target is the
    prefix itself without its trailing slash, which the caller redirects.
    """
    try:
        target = origin_form(target)  # "http://host/prefix/x" is under the prefix too
    except TargetError:
        return target  # the caller's parse_target answers 400
    path, sep, query = target.partition(b"?")
    if path == prefix:
        return None
    if path.startswith(prefix + b"/"):
        return path[len(prefix) :] + sep + query
    return target


def mount_redirect(prefix: str, target: bytes) -> str:
    """Location for ``/prefix`` asked without its slash: ``prefix/`` relative, query kept."""
    # The prefix is in URL form already (--root-path percent-encodes it): keep its escapes.
    location = quote(prefix.rsplit("/", 1)[-1], safe=_SEGMENT_SAFE + "%") + "/"
    _, sep, query = target.partition(b"?")
    if sep and query:
        location += "?" + quote_query(query)
    return location


def wants_download(query: bytes) -> bool:
    """Whether the query asks for an attachment: ``?download`` or ``?download=…``."""
    return any(part.partition(b"=")[0] == b"download" for part in query.split(b"&"))
