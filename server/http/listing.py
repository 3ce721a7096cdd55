"""Directory listings for ``--autoindex``: the query, the order and the page (pure).

What a listing may name is decided by the scan (``server/files/scan.py``). Here, the
security truths of the page, stated plainly:

* Every name is HTML-escaped wherever it is text or an attribute value, and wherever it is
  part of a URL it is percent-encoded with only RFC 3986 unreserved characters left as
  they are: no name can end an attribute, open a tag, read as a scheme, a query or a
  fragment, or leave the single quotes of the ``curl`` hint.
* The page runs one constant inline script and nothing else: ``CONTENT_SECURITY_POLICY``
  pins it and the stylesheet by hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from urllib.parse import quote, unquote_to_bytes

MAX_ENTRIES = 10_000
SORT_KEYS = ("name", "size", "date")
ORDERS = ("asc", "desc")
DEFAULT_SORT = ("name", "asc")

HTML_CONTENT_TYPE = "text/html; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"

# A first click on a column sorts the way people look for things: A-Z, biggest, newest.
_FIRST_ORDER = {"name": "asc", "size": "desc", "date": "desc"}
_COLUMN_LABELS = {"name": "Name", "size": "Size", "date": "Modified (UTC)"}
_ARIA_SORT = {"asc": "ascending", "desc": "descending"}
_ARROWS = {"asc": "\u25b2", "desc": "\u25bc"}
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DIGIT_RUN = re.compile(r"[0-9]+")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

_DIR_ICON = "\U0001f4c1"
_FILE_ICON = "\U0001f4c4"
_UP_ICON = "\u2b06\ufe0f"
_ICON_BY_EXT = {
    **dict.fromkeys(
        ("png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "bmp", "ico", "tif", "tiff"),
        "\U0001f5bc\ufe0f",
    ),
    **dict.fromkeys(("mp4", "mkv", "webm", "mov", "avi", "m4v", "mpg", "mpeg"), "\U0001f39e\ufe0f"),
    **dict.fromkeys(("mp3", "flac", "wav", "ogg", "oga", "opus", "m4a", "aac"), "\U0001f3b5"),
    **dict.fromkeys(
        ("zip", "tar", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "iso", "deb", "rpm", "whl"),
        "\U0001f4e6",
    ),
    **dict.fromkeys(("txt", "md", "rst", "csv", "log"), "\U0001f4dd"),
    "pdf": "\U0001f4d5",
}

_STYLE = """
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--hover:#f6f8fa;--link:#0969da;
--note-bg:#fff8c5;--note-line:#d4a72c}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#30363d;--hover:#161b22;--link:#4493f8;--note-bg:#272115;--note-line:#9e6a03}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
.wrap{max-width:68rem;margin:0 auto;padding:1.25rem 1rem 2rem}
h1{font-size:1.3rem;font-weight:600;margin:0 0 1rem;overflow-wrap:anywhere}
h1 .crumbs{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:500}
a{color:var(--link);text-decoration:none}
a:hover{text-decoration:underline}
a:focus-visible{outline:2px solid var(--link);outline-offset:2px;border-radius:2px}
.note{margin:0 0 1rem;padding:.6rem .8rem;border:1px solid var(--note-line);
background:var(--note-bg);border-radius:6px}
table{width:100%;border-collapse:collapse}
th,td{padding:.45rem .6rem;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top}
th{position:sticky;top:0;z-index:1;background:var(--bg);font-size:.85rem;font-weight:600;
white-space:nowrap}
th a{color:var(--fg)}
th[aria-sort] a{color:var(--link)}
tbody tr:hover{background:var(--hover)}
td.n{width:100%;max-width:0;overflow-wrap:anywhere;word-break:break-word}
.i{display:inline-block;width:1.6em;text-align:center;margin-right:.3rem;
text-decoration:none}
.nm{unicode-bidi:isolate}
.s,.m{white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--muted)}
.s{text-align:right}
.dl{display:block;margin:.15rem 0 0 2.2em;color:var(--muted);white-space:pre;overflow-x:auto;
font:.75rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
-webkit-user-select:all;user-select:all}
.empty{padding:2rem;text-align:center;color:var(--muted)}
footer{margin-top:1rem;color:var(--muted);font-size:.85rem}
@media (max-width:40rem){body{font-size:14px}.wrap{padding:1rem .5rem}
th,td{padding:.45rem .3rem}.dl,.t{display:none}}
"""

# Fills in the origin of the download hints; the pattern keeps a hostile Host (quotes,
# "$(...)") out of a command meant to be pasted into a shell.
_SCRIPT = (
    "(function(){var o=location.origin;"
    "if(!/^https?:\\/\\/[A-Za-z0-9.:\\[\\]-]+$/.test(o))return;"
    'var s=document.querySelectorAll("span.o");'
    "for(var i=0;i<s.length;i++)s[i].textContent=o})();"
)


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# What the integrator sends as the Content-Security-Policy of a listing page: the one
# stylesheet and the one script, nothing else (no injected markup could run).
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # decoded; any character but "/" and NUL
    is_dir: bool
    size: int  # bytes (0 for directories)
    mtime: float  # seconds since the epoch (st_mtime)
    sha256: str | None = None  # hex, when the digest is known already (never computed)


@dataclass(frozen=True, slots=True)
class Listing:
    entries: tuple[Entry, ...]
    truncated: bool  # more entries passed the rules than were kept (the cap)
    total: int  # how many entries passed the rules, kept or not


# --- query and order (pure) ------------------------------------------------------------------


def parse_listing_query(query: bytes) -> tuple[str, str, bool]:
    """(sort key, order, JSON wanted) from a raw query such as ``sort=size&order=desc``.

    The first occurrence of a parameter counts; unknown or malformed values are ignored.
    """
    found: dict[bytes, bytes] = {}
    for pair in query.split(b"&"):
        raw_key, _, raw_value = pair.partition(b"=")
        key = unquote_to_bytes(raw_key.replace(b"+", b" ")).lower()
        if key in (b"sort", b"order", b"format") and key not in found:
            found[key] = unquote_to_bytes(raw_value.replace(b"+", b" ")).lower()
    sort = found.get(b"sort", b"").decode("latin-1")
    order = found.get(b"order", b"").decode("latin-1")
    return (
        sort if sort in SORT_KEYS else DEFAULT_SORT[0],
        order if order in ORDERS else DEFAULT_SORT[1],
        found.get(b"format") == b"json",
    )


def _number_token(match: re.Match[str]) -> str:
    # "0" (so a number sorts against other characters as a digit would), one character
    # for the length without leading zeros (longer is larger), then the digits.
    digits = match.group().lstrip("0")
    return "0" + chr(0x30 + len(digits)) + digits


def name_key(name: str) -> tuple[str, str]:
    """Case-insensitive natural order ("file2" before "file10"); the raw name breaks ties."""
    return _DIGIT_RUN.sub(_number_token, name.casefold()), name


def sort_entries(entries: Sequence[Entry], key: str, order: str) -> list[Entry]:
    """Directories first, then files; each group by ``key``, ties by name ascending.

    ``order`` "desc" reverses within each group. Unknown values mean ("name", "asc").
    """
    descending = order == "desc"
    groups: list[list[Entry]] = [[], []]
    for entry in entries:
        groups[not entry.is_dir].append(entry)
    out: list[Entry] = []
    for group in groups:
        group.sort(key=lambda e: name_key(e.name), reverse=descending and key == "name")
        # Stable sorts: equal sizes or dates keep the ascending name order from above.
        if key == "size":
            group.sort(key=lambda e: e.size, reverse=descending)
        elif key == "date":
            group.sort(key=lambda e: e.mtime, reverse=descending)
        out.extend(group)
    return out


# --- rendering (pure) ------------------------------------------------------------------------


def human_size(size: int) -> str:
    """Binary units, three significant figures at most: 512 B, 1.4 MiB, 23 GiB."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        # 1023.7 KiB would round to "1024 KiB": that is "1.0 MiB".
        if float(text) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{text} {unit}"
    return f"{size} B"  # not reached: the last unit always returns


def _utc(mtime: float) -> datetime | None:
    """The mtime as an aware UTC datetime; None when the platform cannot represent it."""
    try:
        return datetime.fromtimestamp(mtime, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def iso_utc(mtime: float) -> str | None:
    """ISO 8601 in UTC to the second, e.g. ``2026-11-25T12:00:00Z``."""
    when = _utc(mtime)
    return None if when is None else when.replace(tzinfo=None).isoformat("T", "seconds") + "Z"


def _q(segment: str) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters (UTF-8)."""
    return quote(segment, safe="")


def _base_path(segments: tuple[str, ...], prefix: str) -> str:
    """The directory's absolute URL path under ``prefix``, ``/``-terminated and encoded."""
    # The prefix is the operator's, already in URL form: keep its escapes, encode the rest.
    mount = quote(prefix.strip().rstrip("/"), safe="/%")
    if mount and not mount.startswith("/"):
        mount = "/" + mount
    return mount + "".join("/" + _q(s) for s in segments) + "/"


def _visible(name: str) -> str:
    """Control and other invisible characters shown as symbols, so no name can pass for
    another (a newline, a right-to-left override)."""
    if name.isprintable():
        return name
    out = []
    for ch in name:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif code < 0x20:
            out.append(chr(0x2400 + code))  # the Control Pictures block: \n is shown as ␊
        elif code == 0x7F:
            out.append("\u2421")
        else:
            out.append(f"\u27e8U+{code:04X}\u27e9")
    return "".join(out)


def _icon(entry: Entry) -> str:
    if entry.is_dir:
        return _DIR_ICON
    _, dot, ext = entry.name.rpartition(".")
    return _ICON_BY_EXT.get(ext.lower(), _FILE_ICON) if dot else _FILE_ICON


def _curl_hint(name: str, url_path: str) -> str:
    """A download command for the file at ``url_path``, as HTML; the script adds the origin.

    ``-O`` names the local file from the URL, which keeps escapes, so a name that needs
    them is given with ``-o`` in shell quotes (when it has nothing unprintable).
    """
    url = f"'<span class=o></span>{escape(url_path)}'"
    if set(name) <= _UNRESERVED and not name.startswith("-"):  # curl -O ".../-" is stdout
        return f"<code class=dl>curl -fO {url}</code>"
    if name.isprintable():
        local = shlex.quote("./" + name if name.startswith("-") else name)
        return f"<code class=dl>curl -fo {escape(local)} {url}</code>"
    return f"<code class=dl>curl -fO {url}</code>"


def _time_cell(mtime: float) -> str:
    when = _utc(mtime)
    if when is None:
        return "<td class=m>\u2014</td>"
    stamp = when.replace(tzinfo=None).isoformat("T", "minutes")
    day, _, clock = stamp.partition("T")
    return (
        f'<td class=m><time datetime="{iso_utc(mtime)}">{day}'
        f"<span class=t> {clock}</span></time></td>"
    )


def _header_cell(column: str, sort: str, order: str) -> str:
    label = _COLUMN_LABELS[column]
    css = {"name": "n", "size": "s", "date": "m"}[column]
    if column == sort:
        next_order = "asc" if order == "desc" else "desc"
        return (
            f'<th scope=col class={css} aria-sort="{_ARIA_SORT[order]}">'
            f'<a href="?sort={column}&amp;order={next_order}">{label} '
            f"<span aria-hidden=true>{_ARROWS[order]}</span></a></th>"
        )
    return (
        f"<th scope=col class={css}>"
        f'<a href="?sort={column}&amp;order={_FIRST_ORDER[column]}">{label}</a></th>'
    )


def _breadcrumbs(segments: tuple[str, ...], prefix: str) -> str:
    """Every ancestor a relative link (``../../``), so the page works under any mount."""
    root_label = escape(prefix.strip().rstrip("/") + "/")
    depth = len(segments)
    if depth == 0:
        return f"<span aria-current=page>{root_label}</span>"
    parts = [f'<a href="{"../" * depth}">{root_label}</a>']
    for i, segment in enumerate(segments):
        text = escape(_visible(segment))
        if i == depth - 1:
            parts.append(f"<span aria-current=page>{text}</span>/")
        else:
            parts.append(f'<a href="{"../" * (depth - 1 - i)}">{text}</a>/')
    return "".join(parts)


def _clean_sort(sort: str, order: str) -> tuple[str, str]:
    return (
        sort if sort in SORT_KEYS else DEFAULT_SORT[0],
        order if order in ORDERS else DEFAULT_SORT[1],
    )


def render_html(
    listing: Listing,
    segments: tuple[str, ...],
    sort: str,
    order: str,
    prefix: str = "",
    archives: tuple[str, ...] = (),
) -> bytes:
    """A complete UTF-8 HTML page listing the directory at ``segments`` (``()`` = root).

    Links are relative; ``prefix`` (the ``--root-path`` mount) appears in titles and hints.
    """
    sort, order = _clean_sort(sort, order)
    entries = sort_entries(listing.entries, sort, order)
    base = _base_path(segments, prefix)
    title = escape(_visible(prefix.strip().rstrip("/") + "/" + "".join(s + "/" for s in segments)))
    out = [
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
        '<meta name=viewport content="width=device-width, initial-scale=1">\n',
        '<meta name=color-scheme content="light dark">\n',
        f"<title>Index of {title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        "<div class=wrap>\n<header><h1>Index of <span class=crumbs>",
        _breadcrumbs(segments, prefix),
        "</span></h1>",
    ]
    if archives:
        # Relative links to this directory as one download (--archives).
        links = " ".join(
            f'<a class=ar href="./?archive={kind}" download>{kind}</a>' for kind in archives
        )
        out.append(f"<p class=archives>Download this directory: {links}</p>")
    out += [
        "</header>\n<main>\n",
    ]
    if listing.truncated:
        out.append(
            f"<p class=note role=status>Showing {len(entries):,} of {listing.total:,} "
            "entries: the listing is capped (directories first, then by name).</p>\n"
        )
    out.append("<table>\n<thead><tr>")
    out.extend(_header_cell(column, sort, order) for column in SORT_KEYS)
    out.append("</tr></thead>\n<tbody>\n")
    if segments:
        out.append(
            '<tr class=up><td class=n><a href="../" title="Parent directory">'
            f"<span class=i aria-hidden=true>{_UP_ICON}</span>../</a></td>"
            "<td class=s></td><td class=m></td></tr>\n"
        )
    dirs = files = 0
    total_bytes = 0
    for entry in entries:
        href = "./" + _q(entry.name) + ("/" if entry.is_dir else "")
        text = escape(_visible(entry.name)) + ("/" if entry.is_dir else "")
        link = (
            f'<a href="{href}"><span class=i aria-hidden=true>{_icon(entry)}</span>'
            f"<span class=nm>{text}</span></a>"
        )
        if entry.is_dir:
            dirs += 1
            out.append(f"<tr class=d><td class=n>{link}</td><td class=s>\u2014</td>")
        else:
            files += 1
            total_bytes += entry.size
            hint = _curl_hint(entry.name, base + _q(entry.name))
            out.append(
                f"<tr class=f><td class=n>{link}{hint}</td>"
                f'<td class=s title="{entry.size} bytes">{human_size(entry.size)}</td>'
            )
        out.append(_time_cell(entry.mtime) + "</tr>\n")
    if not entries:
        out.append("<tr><td class=empty colspan=3>This directory is empty.</td></tr>\n")
    out.append("</tbody>\n</table>\n</main>\n<footer>")
    out.append(
        f"{dirs:,} {'directory' if dirs == 1 else 'directories'}, "
        f"{files:,} {'file' if files == 1 else 'files'} ({human_size(total_bytes)})"
    )
    out.append(
        f' \u00b7 <a href="?sort={sort}&amp;order={order}&amp;format=json">JSON</a>'
        f"</footer>\n</div>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
    return "".join(out).encode("utf-8")


def render_json(
    listing: Listing,
    segments: tuple[str, ...],
    sort: str,
    order: str,
    prefix: str = "",
    archives: tuple[str, ...] = (),
) -> bytes:
    """The listing as UTF-8 JSON: path, url, sort, order, entries, truncated, total.

    ``url`` values are absolute paths under ``prefix``; ``mtime`` is ISO 8601 UTC.
    """
    sort, order = _clean_sort(sort, order)
    base = _base_path(segments, prefix)
    document = {
        "path": "/" + "".join(s + "/" for s in segments),
        "url": base,
        "sort": sort,
        "order": order,
        "entries": [
            {
                "name": e.name,
                "is_dir": e.is_dir,
                "size": e.size,
                "mtime": iso_utc(e.mtime),
                "url": base + _q(e.name) + ("/" if e.is_dir else ""),
                **({"sha256": e.sha256} if e.sha256 is not None else {}),
            }
            for e in sort_entries(listing.entries, sort, order)
        ],
        "truncated": listing.truncated,
        "total": listing.total,
    }
    if archives:
        document["archives"] = {kind: f"{base}?archive={kind}" for kind in archives}
    text = json.dumps(document, ensure_ascii=True)
    # Outside strings JSON has no "<", ">" or "&": escaping them keeps a sniffing browser
    # from ever finding markup in a listing.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (text + "\n").encode("utf-8")
