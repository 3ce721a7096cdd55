"""Directory listings (--autoindex): query, order, rendering and scanning real directories."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import socket
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from server.files import root as files_root
from server.files import scan
from server.files.root import Root
from server.http.listing import (
    CONTENT_SECURITY_POLICY,
    MAX_ENTRIES,
    SORT_KEYS,
    Entry,
    Listing,
    human_size,
    iso_utc,
    parse_listing_query,
    render_html,
    render_json,
    sort_entries,
)


def scan_directory(
    path: str, root: str, allow_dotfiles: bool, max_entries: int = MAX_ENTRIES
) -> Listing:
    """The scan under a root with the dotfile rule given (the lookup's ``Root``)."""
    return scan.scan_directory(path, Root(root, allow_dotfiles), max_entries)


T0 = 1_795_608_000.0  # 2026-11-25T12:00:00Z

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "it's",
    'say "hi"',
    "a&b&amp;c",
    "what?x=1",
    "hash#frag",
    "100%",
    "%2e%2e",
    "%",
    "space name.txt",
    "new\nline",
    "tab\there",
    "\u00fcber",
    "\u65e5\u672c\u8a9e.txt",
    "a:b",
    "javascript:alert(1)",
    "$(reboot)",
    "`id`; rm -rf ~",
    "-rf",
    "-",
    "rtl\u202egnp.exe",
    "del\x7fete",
    "nbsp\u00a0name",
    "..hidden-ish",
    "plain.txt",
]


class _Page(HTMLParser):
    """Collects every element with its attributes, the text of each <a>, <code>, <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.codes: list[str] = []
        self.names: list[str] = []  # the text of each <span class=nm> (an entry's name)
        self.scripts: list[str] = []
        self.title = ""
        self.text: list[str] = []
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag in ("a", "code", "script", "title") or (tag, attributes.get("class")) == (
            "span",
            "nm",
        ):
            self._open.append((tag, attributes, []))

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            _, attributes, parts = self._open.pop()
            text = "".join(parts)
            if tag == "a":
                self.links.append((attributes["href"] or "", text))
            elif tag == "code":
                self.codes.append(text)
            elif tag == "script":
                self.scripts.append(text)
            elif tag == "span":
                self.names.append(text)
            else:
                self.title = text

    def handle_data(self, data):
        self.text.append(data)
        for _, _, parts in self._open:
            parts.append(data)


def _parse(body: bytes) -> _Page:
    page = _Page()
    page.feed(body.decode("utf-8"))
    page.close()
    return page


def _entry_links(page: _Page) -> list[tuple[str, str]]:
    """(href, shown name) of each entry's link, in page order."""
    hrefs = [h for h, _ in page.links if h.startswith("./")]
    assert len(hrefs) == len(page.names)
    return list(zip(hrefs, page.names, strict=True))


def _files(*names: str, size: int = 10) -> list[Entry]:
    return [Entry(n, False, size, T0) for n in names]


# --- parse_listing_query -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(b"", ("name", "asc", False), id="empty"),
        pytest.param(b"sort=size&order=desc&format=json", ("size", "desc", True), id="all-three"),
        pytest.param(b"sort=date", ("date", "asc", False), id="sort-only"),
        pytest.param(b"order=desc", ("name", "desc", False), id="order-only"),
        pytest.param(b"format=json", ("name", "asc", True), id="json-only"),
        pytest.param(b"format=html", ("name", "asc", False), id="format-html"),
        pytest.param(b"format=xml", ("name", "asc", False), id="format-unknown"),
        pytest.param(b"sort=SIZE&order=DESC&format=JSON", ("size", "desc", True), id="case"),
        pytest.param(b"sort=%73ize", ("size", "asc", False), id="percent-encoded-value"),
        pytest.param(b"%73ort=date", ("date", "asc", False), id="percent-encoded-key"),
        pytest.param(b"sort=size&sort=date", ("size", "asc", False), id="first-occurrence"),
        pytest.param(b"sort=bogus&order=desc", ("name", "desc", False), id="bad-sort-kept-order"),
        pytest.param(b"sort=size&order=sideways", ("size", "asc", False), id="bad-order"),
        pytest.param(b"sort", ("name", "asc", False), id="key-without-value"),
        pytest.param(b"sort=", ("name", "asc", False), id="empty-value"),
        pytest.param(b"=&&=&", ("name", "asc", False), id="only-separators"),
        pytest.param(b"sort=size%", ("name", "asc", False), id="malformed-percent"),
        pytest.param(b"sort=%zz", ("name", "asc", False), id="bad-hex"),
        pytest.param(b"sort=na\xffme", ("name", "asc", False), id="non-ascii-bytes"),
        pytest.param(b"sort=size+", ("name", "asc", False), id="plus-is-space"),
        pytest.param(b"sort=size;order=desc", ("name", "asc", False), id="semicolon-not-separator"),
        pytest.param(b"x=1&sort=date&order=desc&y", ("date", "desc", False), id="unrelated-params"),
        pytest.param(b"sort=size&order=desc#frag", ("size", "asc", False), id="junk-after-value"),
        pytest.param(b"sort=size\x00", ("name", "asc", False), id="nul"),
        pytest.param(b"&" * 5000 + b"sort=size", ("size", "asc", False), id="long-query"),
    ],
)
def test_parse_listing_query(query, expected):
    assert parse_listing_query(query) == expected


# --- sort_entries ---------------------------------------------------------------------------

_MIXED = [
    Entry("b.txt", False, 300, T0 + 2),
    Entry("Zeta", True, 0, T0 + 5),
    Entry("a.txt", False, 100, T0 + 3),
    Entry("alpha", True, 0, T0 + 1),
    Entry("C.bin", False, 200, T0 + 1),
    Entry("same1", False, 200, T0 + 3),
]


@pytest.mark.parametrize(
    ("key", "order", "expected"),
    [
        ("name", "asc", ["alpha", "Zeta", "a.txt", "b.txt", "C.bin", "same1"]),
        ("name", "desc", ["Zeta", "alpha", "same1", "C.bin", "b.txt", "a.txt"]),
        # Directories (size 0 each) keep name order; equal sizes tie by name.
        ("size", "asc", ["alpha", "Zeta", "a.txt", "C.bin", "same1", "b.txt"]),
        ("size", "desc", ["alpha", "Zeta", "b.txt", "C.bin", "same1", "a.txt"]),
        ("date", "asc", ["alpha", "Zeta", "C.bin", "b.txt", "a.txt", "same1"]),
        ("date", "desc", ["Zeta", "alpha", "a.txt", "same1", "b.txt", "C.bin"]),
        # Unknown values fall back to name ascending.
        ("colour", "asc", ["alpha", "Zeta", "a.txt", "b.txt", "C.bin", "same1"]),
        ("name", "up", ["alpha", "Zeta", "a.txt", "b.txt", "C.bin", "same1"]),
    ],
)
def test_sort_entries_directories_first_then_key(key, order, expected):
    assert [e.name for e in sort_entries(_MIXED, key, order)] == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["file10", "file2", "file1"], ["file1", "file2", "file10"]),
        (["b", "B", "a", "A"], ["A", "a", "B", "b"]),
        (["a1.txt", "a.txt", "a10.txt", "a2.txt"], ["a.txt", "a1.txt", "a2.txt", "a10.txt"]),
        (["x007", "x7", "x08"], ["x007", "x7", "x08"]),
        (["v1.10.0", "v1.9.2", "v1.9.10"], ["v1.9.2", "v1.9.10", "v1.10.0"]),
        (["\u00fcber", "Ubuntu", "zebra"], ["Ubuntu", "zebra", "\u00fcber"]),
        (["9" * 300, "1" + "0" * 299], ["1" + "0" * 299, "9" * 300]),
    ],
)
def test_name_order_is_natural_and_case_insensitive(names, expected):
    assert [e.name for e in sort_entries(_files(*names), "name", "asc")] == expected
    reversed_names = [e.name for e in sort_entries(_files(*names), "name", "desc")]
    assert reversed_names == expected[::-1]


def test_sort_ties_by_name_in_both_orders():
    entries = [*_files("c", "a", "b", size=5), Entry("d", False, 9, T0)]
    assert [e.name for e in sort_entries(entries, "size", "desc")] == ["d", "a", "b", "c"]
    assert [e.name for e in sort_entries(entries, "size", "asc")] == ["a", "b", "c", "d"]
    assert [e.name for e in sort_entries(entries, "date", "desc")] == ["a", "b", "c", "d"]


def test_sort_does_not_mutate_input():
    entries = tuple(_MIXED)
    sort_entries(entries, "size", "desc")
    assert entries == tuple(_MIXED)


# --- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024 - 1, "10 KiB"),
        (10 * 1024, "10 KiB"),
        (1023 * 1024, "1023 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (int(1.4 * 1024**2), "1.4 MiB"),
        (5 * 1024**3 + 77, "5.0 GiB"),
        (123 * 1024**4, "123 TiB"),
        (2**70, "1.0 ZiB"),
        (2**90, "1024 YiB"),
    ],
)
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("mtime", "text"),
    [
        (T0, "2026-11-25T12:00:00Z"),
        (T0 + 0.999, "2026-11-25T12:00:00Z"),
        (0.0, "1970-01-01T00:00:00Z"),
        (-86400.0, "1969-12-31T00:00:00Z"),
        (1e18, None),
    ],
)
def test_iso_utc(mtime, text):
    assert iso_utc(mtime) == text


# --- render_html ------------------------------------------------------------------------------


def _hostile_listing() -> Listing:
    entries = [Entry(n, False, 1000 + i, T0) for i, n in enumerate(HOSTILE_NAMES)]
    entries += [Entry("dir " + n, True, 0, T0) for n in HOSTILE_NAMES[:8]]
    return Listing(tuple(entries), False, len(entries))


def test_html_names_are_escaped_and_links_decode_to_the_exact_name():
    listing = _hostile_listing()
    body = render_html(listing, ("sub <dir>", "x\"y'z"), "name", "asc", "/files")
    text = body.decode("utf-8")
    page = _parse(body)
    for name in HOSTILE_NAMES:
        if any(c in name for c in "<>\"'&\n\t\x7f\u202e\u00a0"):
            assert name not in text, name
    links = _entry_links(page)
    assert len(links) == len(listing.entries)
    expected = {(e.name, e.is_dir) for e in listing.entries}
    decoded = set()
    for href, _ in links:
        assert href.startswith("./")
        rest = href[2:]
        is_dir = rest.endswith("/")
        decoded.add((unquote(rest.removesuffix("/"), errors="strict"), is_dir))
    assert decoded == expected


def test_html_hrefs_use_only_safe_characters_and_never_read_as_a_scheme():
    page = _parse(render_html(_hostile_listing(), ("a:b", "?#"), "size", "desc", "/files"))
    hrefs = [attrs["href"] for tag, attrs in page.elements if tag == "a"]
    assert hrefs
    for href in hrefs:
        assert href is not None
        if href.startswith("?"):  # the column headers and the JSON link
            assert re.fullmatch(r"\?sort=(name|size|date)&order=(asc|desc)(&format=json)?", href)
            continue
        assert re.fullmatch(r"(\./|(\.\./)+)[A-Za-z0-9._~%-]*/?", href), href
        assert not re.search(r"%(?![0-9A-F]{2})", href), href
        assert urlsplit(href).scheme == ""


def test_html_link_text_shows_the_name_with_invisible_characters_made_visible():
    names = ["<b>bold</b>", "a&amp;b", "new\nline", "tab\there", "rtl\u202egnp.exe", "\u65e5\u672c"]
    listing = Listing((*_files(*names), Entry("d&d", True, 0, T0)), False, 7)
    page = _parse(render_html(listing, (), "name", "asc"))
    shown = {unquote(h[2:].removesuffix("/")): t for h, t in _entry_links(page)}
    assert shown["<b>bold</b>"] == "<b>bold</b>"
    assert shown["a&amp;b"] == "a&amp;b"
    assert shown["new\nline"] == "new\u240aline"
    assert shown["tab\there"] == "tab\u2409here"
    assert shown["rtl\u202egnp.exe"] == "rtl\u27e8U+202E\u27e9gnp.exe"
    assert shown["\u65e5\u672c"] == "\u65e5\u672c"
    assert shown["d&d"] == "d&d/"


def test_html_page_structure():
    entries = (
        Entry("docs", True, 0, T0),
        Entry("big.iso", False, int(1.4 * 1024**2), T0),
        Entry("small.txt", False, 12, T0 - 60),
    )
    body = render_html(Listing(entries, False, 3), ("pub", "releases"), "name", "asc")
    text = body.decode("utf-8")
    page = _parse(body)
    assert text.startswith("<!doctype html>")
    assert page.title == "Index of /pub/releases/"
    tags = {tag for tag, _ in page.elements}
    assert {"html", "head", "meta", "title", "style", "table", "thead", "tbody"} <= tags
    metas = [attrs for tag, attrs in page.elements if tag == "meta"]
    assert {"charset": "utf-8"} in metas
    assert any(m.get("name") == "viewport" for m in metas)
    assert "prefers-color-scheme:dark" in text
    # No external assets: nothing is loaded from anywhere.
    for _, attrs in page.elements:
        assert "src" not in attrs
        assert not (attrs.get("rel") or "").startswith("stylesheet")
    assert "http://" not in text and "https://" not in text.replace("https?", "")
    # Breadcrumbs: the root and each ancestor are links, the current directory is not.
    assert ("../../", "/") in page.links
    assert ("../", "pub") in page.links
    assert ("../", "\u2b06\ufe0f../") in page.links  # the parent row
    # Sizes: human-readable, exact bytes in the title; directories show a dash.
    cells = [attrs for tag, attrs in page.elements if tag == "td" and attrs.get("title")]
    assert [c["title"] for c in cells] == [f"{int(1.4 * 1024**2)} bytes", "12 bytes"]
    assert "1.4 MiB" in page.text and "12 B" in page.text and "\u2014" in page.text
    # Modification time in UTC, machine-readable too.
    times = [attrs["datetime"] for tag, attrs in page.elements if tag == "time"]
    assert times == ["2026-11-25T12:00:00Z", "2026-11-25T12:00:00Z", "2026-11-25T11:59:00Z"]
    assert "2026-11-25" in page.text and " 12:00" in page.text
    # Type markers and the listing order (directories first).
    assert [t for h, t in page.links if h.startswith("./")] == [
        "\U0001f4c1docs/",
        "\U0001f4e6big.iso",
        "\U0001f4ddsmall.txt",
    ]
    assert "1 directory, 2 files (1.4 MiB)" in "".join(page.text)
    assert ("?sort=name&order=asc&format=json", "JSON") in page.links


def test_html_root_has_no_parent_link_and_names_the_root():
    page = _parse(render_html(Listing((), False, 0), (), "name", "asc"))
    assert page.title == "Index of /"
    assert not [h for h, _ in page.links if h.startswith("..")]
    assert "This directory is empty." in page.text


def test_html_prefix_appears_in_title_crumbs_and_download_paths():
    listing = Listing(tuple(_files("f.txt")), False, 1)
    page = _parse(render_html(listing, ("a",), "name", "asc", "/files"))
    assert page.title == "Index of /files/a/"
    assert ("../", "/files/") in page.links
    assert page.codes == ["curl -fO '/files/a/f.txt'"]
    # The links themselves stay relative, right under a proxy that strips the prefix too.
    assert ("./f.txt", "\U0001f4ddf.txt") in page.links


@pytest.mark.parametrize(
    ("sort", "order", "links"),
    [
        (
            "name",
            "asc",
            {"name": "order=desc", "size": "order=desc", "date": "order=desc"},
        ),
        ("name", "desc", {"name": "order=asc", "size": "order=desc", "date": "order=desc"}),
        ("size", "desc", {"name": "order=asc", "size": "order=asc", "date": "order=desc"}),
        ("size", "asc", {"name": "order=asc", "size": "order=desc", "date": "order=desc"}),
        ("date", "desc", {"name": "order=asc", "size": "order=desc", "date": "order=asc"}),
        ("bogus", "nope", {"name": "order=desc", "size": "order=desc", "date": "order=desc"}),
    ],
)
def test_html_column_headers_sort_and_toggle(sort, order, links):
    body = render_html(Listing(tuple(_files("x")), False, 1), (), sort, order)
    page = _parse(body)
    headers = {
        h.split("&")[0].removeprefix("?sort="): h
        for h, _ in page.links
        if h.startswith("?") and not h.endswith("format=json")
    }
    assert len(headers) == 3
    for column in SORT_KEYS:
        assert headers[column] == f"?sort={column}&{links[column]}"
    active = [a for tag, a in page.elements if tag == "th" and "aria-sort" in a]
    assert len(active) == 1
    effective_order = order if order in ("asc", "desc") else "asc"
    assert active[0]["aria-sort"] == {"asc": "ascending", "desc": "descending"}[effective_order]
    arrow = "\u25b2" if effective_order == "asc" else "\u25bc"
    assert sum(t.count(arrow) for t in page.text) == 1


def test_html_truncation_notice():
    listing = Listing(tuple(_files("a", "b")), True, 12_345)
    page = _parse(render_html(listing, (), "name", "asc"))
    assert any("Showing 2 of 12,345 entries" in t for t in page.text)
    page = _parse(render_html(Listing(tuple(_files("a", "b")), False, 2), (), "name", "asc"))
    assert not any("Showing" in t for t in page.text)


def test_html_download_hints_are_shell_safe_commands_for_the_exact_file():
    listing = Listing(tuple(_files(*HOSTILE_NAMES)), False, len(HOSTILE_NAMES))
    page = _parse(render_html(listing, ("d i r", "$(x)"), "name", "asc", "/files"))
    assert len(page.codes) == len(HOSTILE_NAMES)
    origin = "http://example.test:8000"
    saved = {}
    for code in page.codes:
        # What the inline script does: the origin goes into the empty span.
        argv = shlex.split(code.replace(" '/", f" '{origin}/", 1))
        assert argv[0] == "curl"
        url = argv[-1]
        assert url.startswith(origin + "/files/d%20i%20r/%24%28x%29/")
        assert re.fullmatch(r"[A-Za-z0-9._~%/:-]+", url)
        name = unquote(url.rsplit("/", 1)[1], errors="strict")
        if argv[1] == "-fo":
            assert len(argv) == 4
            local = argv[2]
            assert local in (name, "./" + name)
        else:
            assert argv[1] == "-fO" and len(argv) == 3
            # Without -o, curl names the file after the URL; fine only for plain names.
            local = url.rsplit("/", 1)[1]
        saved[name] = local
    assert set(saved) == set(HOSTILE_NAMES)
    assert saved["plain.txt"] == "plain.txt"
    assert saved["$(reboot)"] == "$(reboot)"
    assert saved["-"] == "./-"


def test_html_runs_only_the_pinned_script():
    body = render_html(_hostile_listing(), (), "name", "asc")
    page = _parse(body)
    assert len(page.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    style = body.decode().split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'none';")
    # No inline event handlers or style attributes (the CSP would block them anyway).
    for _, attrs in page.elements:
        assert not any(k.startswith("on") or k == "style" for k in attrs)


def test_html_out_of_range_mtime_renders():
    listing = Listing((Entry("future", False, 1, 1e18),), False, 1)
    page = _parse(render_html(listing, (), "date", "desc"))
    assert not [a for tag, a in page.elements if tag == "time"]


# --- render_json ------------------------------------------------------------------------------


def test_json_structure_and_urls():
    listing = _hostile_listing()
    body = render_json(Listing(listing.entries, True, 99), ("a b", "\u00fc"), "size", "desc")
    doc = json.loads(body)
    assert set(doc) == {"path", "url", "sort", "order", "entries", "truncated", "total"}
    assert doc["path"] == "/a b/\u00fc/"
    assert doc["url"] == "/a%20b/%C3%BC/"
    assert (doc["sort"], doc["order"], doc["truncated"], doc["total"]) == ("size", "desc", True, 99)
    names = [e["name"] for e in doc["entries"]]
    assert names == [e.name for e in sort_entries(listing.entries, "size", "desc")]
    for item in doc["entries"]:
        assert set(item) == {"name", "size", "mtime", "is_dir", "url"}
        assert item["mtime"] == "2026-11-25T12:00:00Z"
        url = item["url"]
        assert url.startswith("/a%20b/%C3%BC/")
        assert re.fullmatch(r"[A-Za-z0-9._~%/-]+", url)
        assert url.endswith("/") == item["is_dir"]
        assert unquote(url.removesuffix("/").rsplit("/", 1)[1], errors="strict") == item["name"]
    # No markup characters anywhere in the bytes, even inside strings.
    assert not any(c in body for c in b"<>&")


def test_json_prefix_and_root():
    listing = Listing((Entry("d", True, 0, T0), Entry("f", False, 3, T0)), False, 2)
    doc = json.loads(render_json(listing, (), "name", "asc", "/files"))
    assert doc["path"] == "/" and doc["url"] == "/files/"
    assert [(e["url"], e["size"], e["is_dir"]) for e in doc["entries"]] == [
        ("/files/d/", 0, True),
        ("/files/f", 3, False),
    ]
    assert json.loads(render_json(listing, (), "name", "asc", "/files/"))["url"] == "/files/"


# --- scan_directory ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A served root with every kind of entry, and a directory outside it."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / "sub" / "inner.txt").write_bytes(b"inner")
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "file.txt").write_bytes(b"hello")
    (root / ".env").write_bytes(b"SECRET=1\n")
    os.symlink("file.txt", root / "link-inside.txt")
    os.symlink("sub", root / "linkdir-inside")
    os.symlink(outside / "secret.txt", root / "link-outside.txt")
    os.symlink(outside, root / "linkdir-outside")
    os.symlink("missing", root / "broken")
    os.symlink("loop", root / "loop")
    os.symlink(".env", root / "link-to-dotfile")
    os.symlink(".git/config", root / "link-into-dotdir")
    os.symlink(".", root / "self")
    os.mkfifo(root / "fifo")
    return root, outside


def _names(listing: Listing) -> set[str]:
    return {e.name for e in listing.entries}


def test_scan_lists_what_the_server_serves(tree):
    root, _ = tree
    listing = scan_directory(str(root), str(root), allow_dotfiles=False)
    assert _names(listing) == {
        "sub",
        "file.txt",
        "link-inside.txt",
        "linkdir-inside",
        "self",
    }
    assert listing.total == 5 and not listing.truncated
    by_name = {e.name: e for e in listing.entries}
    st = os.stat(root / "file.txt")
    assert by_name["file.txt"] == Entry("file.txt", False, 5, st.st_mtime)
    # A symlink reports its target's type, size and mtime.
    assert by_name["link-inside.txt"] == Entry("link-inside.txt", False, 5, st.st_mtime)
    assert by_name["linkdir-inside"].is_dir and by_name["linkdir-inside"].size == 0
    assert by_name["self"].is_dir
    assert by_name["sub"] == Entry("sub", True, 0, os.stat(root / "sub").st_mtime)
    # Directories first, then by name.
    assert [e.name for e in listing.entries] == [
        "linkdir-inside",
        "self",
        "sub",
        "file.txt",
        "link-inside.txt",
    ]


def test_scan_with_dotfiles_allowed(tree):
    root, _ = tree
    listing = scan_directory(str(root), str(root), allow_dotfiles=True)
    assert _names(listing) == {
        "sub",
        ".git",
        "file.txt",
        ".env",
        "link-inside.txt",
        "linkdir-inside",
        "link-to-dotfile",
        "link-into-dotdir",
        "self",
    }
    assert not {"link-outside.txt", "linkdir-outside", "broken", "loop", "fifo"} & _names(listing)


def test_scan_without_o_path_resolves_symlinks_the_same(tree, monkeypatch):
    root, _ = tree
    with_o_path = [scan_directory(str(root), str(root), allow) for allow in (False, True)]
    monkeypatch.setattr(files_root, "_O_PATH", 0)
    assert [scan_directory(str(root), str(root), allow) for allow in (False, True)] == with_o_path


def test_scan_skips_sockets_and_unreachable_names(tmp_path):
    root = tmp_path
    (root / "ok").write_bytes(b"")
    os.close(os.open(bytes(root) + b"/bad\xff\xfename", os.O_CREAT | os.O_WRONLY, 0o644))
    (root / "back\\slash").write_bytes(b"")
    sock_path = root / "s"
    if len(bytes(sock_path)) < 100:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(sock_path))
        try:
            assert _names(scan_directory(str(root), str(root), False)) == {"ok"}
        finally:
            server.close()
    assert _names(scan_directory(str(root), str(root), False)) == {"ok"}


def test_scan_a_subdirectory_and_through_an_inside_symlink(tree):
    root, _ = tree
    assert _names(scan_directory(str(root / "sub"), str(root), False)) == {"inner.txt"}
    assert _names(scan_directory(str(root / "linkdir-inside"), str(root), False)) == {"inner.txt"}
    # A root given by a path that is not real is resolved first.
    alias = root.parent / "alias"
    os.symlink(root, alias)
    assert "file.txt" in _names(scan_directory(str(alias), str(alias), False))


@pytest.mark.parametrize(
    ("rel", "allow", "error"),
    [
        ("linkdir-outside", False, FileNotFoundError),
        ("linkdir-outside", True, FileNotFoundError),
        (".git", False, FileNotFoundError),
        ("missing", False, FileNotFoundError),
        ("broken", False, FileNotFoundError),
        ("file.txt", False, NotADirectoryError),
    ],
)
def test_scan_refuses_directories_it_would_not_serve(tree, rel, allow, error):
    root, _ = tree
    with pytest.raises(error):
        scan_directory(str(root / rel), str(root), allow)


def test_scan_fifo_does_not_block(tree):
    root, _ = tree
    with pytest.raises(NotADirectoryError):
        scan_directory(str(root / "fifo"), str(root), False)


def test_scan_cap_keeps_the_first_entries_in_default_order(tmp_path):
    for i in range(25):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
    (tmp_path / ".hidden").write_bytes(b"")
    listing = scan_directory(str(tmp_path), str(tmp_path), False, max_entries=10)
    assert listing.truncated and listing.total == 28 and len(listing.entries) == 10
    assert [e.name for e in listing.entries] == ["d0", "d1", "d2"] + [f"f{i}" for i in range(7)]
    full = scan_directory(str(tmp_path), str(tmp_path), False, max_entries=28)
    assert not full.truncated and full.total == 28 and len(full.entries) == 28
    assert scan_directory(str(tmp_path), str(tmp_path), False, max_entries=0) == Listing(
        (), True, 28
    )
    empty = tmp_path / "d0"
    assert scan_directory(str(empty), str(tmp_path), False) == Listing((), False, 0)


def test_scan_100k_entries_is_fast_and_capped(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    prefix = str(big) + "/"
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for i in range(100_000):
        os.close(os.open(f"{prefix}file-{i}.bin", flags, 0o644))
    started = time.monotonic()
    listing = scan_directory(str(big), str(tmp_path), False)
    scanned = time.monotonic() - started
    assert scanned < 10, scanned
    assert listing.total == 100_000 and listing.truncated
    assert len(listing.entries) == MAX_ENTRIES
    # Natural order: the first 10,000 by number.
    assert listing.entries[0].name == "file-0.bin"
    assert listing.entries[-1].name == f"file-{MAX_ENTRIES - 1}.bin"
    started = time.monotonic()
    html_body = render_html(listing, ("big",), "size", "desc")
    json_body = render_json(listing, ("big",), "date", "asc")
    assert time.monotonic() - started < 5
    assert html_body.count(b"<tr class=f>") == MAX_ENTRIES
    assert len(json.loads(json_body)["entries"]) == MAX_ENTRIES


def test_scan_memory_is_bounded_by_the_cap_not_the_directory(tmp_path):
    """The review: scan_directory kept every entry before applying the cap, so a huge
    directory cost hundreds of MB per concurrent listing. The cap now applies while
    scanning (a bounded heap)."""
    import tracemalloc

    big = tmp_path / "many"
    big.mkdir()
    prefix = str(big) + "/"
    for i in range(40_000):
        os.close(os.open(f"{prefix}entry-with-a-longish-name-{i:06d}.bin", os.O_CREAT, 0o644))
    tracemalloc.start()
    try:
        listing = scan_directory(str(big), str(tmp_path), False, max_entries=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert listing.total == 40_000 and len(listing.entries) == 100 and listing.truncated
    assert listing.entries[0].name == "entry-with-a-longish-name-000000.bin"
    # 40,000 Entry objects with their names take ~10 MB; 100 of them, a few KB.
    assert peak < 2_000_000, peak
