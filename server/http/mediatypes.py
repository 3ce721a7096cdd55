"""Content-Type from a file name's extension."""

from __future__ import annotations

import mimetypes

DEFAULT_TYPE = "application/octet-stream"

# Types that are text in all but name get a charset too (RFC 9110 §8.3.2: a sender SHOULD
# say the charset of text). We serve UTF-8 by decision; a file in another encoding needs a
# proxy or a renamed extension.
_TEXTUAL = frozenset(
    {"application/javascript", "application/ecmascript", "image/svg+xml", "application/xml"}
)

# Types mimetypes lacks or gets wrong on some Python versions; replicas must agree, so the
# table does not depend on which Python or which /etc/mime.types a host has for these.
_OVERRIDES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".md": "text/markdown",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".woff2": "font/woff2",
    ".zst": "application/zstd",
    ".xz": "application/x-xz",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".iso": "application/x-iso9660-image",
}

_cache: dict[str, str] = {}


def _compute(ext: str) -> str:
    if ext in _OVERRIDES:
        ctype = _OVERRIDES[ext]
    else:
        found = mimetypes.types_map.get(ext) or mimetypes.types_map.get(ext.lower())
        ctype = found or DEFAULT_TYPE
    if ctype.startswith("text/") or ctype in _TEXTUAL:
        ctype += "; charset=utf-8"
    return ctype


def content_type(name: str) -> str:
    """The Content-Type for a file name, e.g. ``text/html; charset=utf-8``."""
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    ctype = _cache.get(ext)
    if ctype is None:
        ctype = _compute(ext) if ext else DEFAULT_TYPE
        if len(_cache) < 4096:  # bounded: extensions come from file names on disk
            _cache[ext] = ctype
    return ctype


mimetypes.init()
