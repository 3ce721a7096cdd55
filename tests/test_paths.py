"""Request-target decoding and normalization (RFC 9112 §3.2, RFC 3986 §5.2.4)."""

from __future__ import annotations

from urllib.parse import unquote, urljoin, urlsplit

import pytest

from server.http.paths import (
    STATUS_BAD_REQUEST,
    RequestPath,
    TargetError,
    directory_redirect,
    parse_target,
    strip_root_path,
)


@pytest.mark.parametrize(
    ("target", "segments"),
    [
        pytest.param(b"/", (), id="root"),
        pytest.param(b"/a/b.txt", ("a", "b.txt"), id="plain-path"),
        pytest.param(b"/a%20b", ("a b",), id="percent-decoded"),
        pytest.param(b"/%C3%BCn%C3%AFcode.txt", ("\u00fcn\u00efcode.txt",), id="utf8-decoded"),
        pytest.param(b"/%252e%252e", ("%2e%2e",), id="decoded-exactly-once-double-encoded-dots"),
        pytest.param(b"/%2541", ("%41",), id="decoded-exactly-once-percent-25"),
        pytest.param(b"/../x", ("x",), id="dotdot-cannot-climb-above-root"),
        pytest.param(b"/../../../../etc/passwd", ("etc", "passwd"), id="many-dotdots-clamped"),
        pytest.param(b"/a/../b", ("b",), id="dotdot-removes-previous-segment"),
        pytest.param(b"/a/./b", ("a", "b"), id="single-dot-removed"),
        pytest.param(b"/%2e%2e/x", ("x",), id="encoded-dotdot-is-dot-segment"),
        pytest.param(b"/%2E%2E/%2e/x", ("x",), id="encoded-dots-uppercase-hex"),
        pytest.param(b"/.%2e/x", ("x",), id="half-encoded-dotdot"),
        pytest.param(b"/a/..%2f..%2fetc", ("etc",), id="dotdot-encoded-slash"),
        pytest.param(b"/a/..%5c..%5cetc", ("etc",), id="dotdot-encoded-backslash"),
        pytest.param(b"/a\\..\\..\\etc", ("etc",), id="raw-backslash-is-separator"),
        pytest.param(b"/a%2fb", ("a", "b"), id="encoded-slash-is-separator"),
        pytest.param(b"//a///b//", ("a", "b"), id="double-slashes-collapsed"),
        pytest.param(b"/a?x=1", ("a",), id="query-not-part-of-path"),
        pytest.param(b"/a%3fx", ("a?x",), id="encoded-question-mark-is-literal"),
        pytest.param(b"/a#frag", ("a",), id="fragment-dropped"),
        pytest.param(b"/...", ("...",), id="three-dots-is-a-name"),
        pytest.param(b"/..a/a..", ("..a", "a.."), id="dotdot-prefix-is-a-name"),
        pytest.param(b"http://host/a/b?q=1", ("a", "b"), id="absolute-form-uses-path"),
        pytest.param(b"HTTPS://host:8443/a", ("a",), id="absolute-form-https-case-insensitive"),
        pytest.param(b"http://host", (), id="absolute-form-without-path-is-root"),
        pytest.param(b"http://host?q", (), id="absolute-form-query-without-path"),
        pytest.param(b"http://host/../../etc", ("etc",), id="absolute-form-dotdot-clamped"),
        pytest.param(b"/file.bin/.", ("file.bin",), id="final-dot-segment"),
        pytest.param(b"/sub/sub/..", ("sub",), id="final-dotdot-segment"),
    ],
)
def test_target_is_decoded_once_and_never_climbs_above_root(target, segments):
    path = parse_target(target)
    assert path.segments == segments
    for seg in path.segments:
        assert seg not in ("", ".", "..")
        assert "/" not in seg and "\\" not in seg and "\x00" not in seg


@pytest.mark.parametrize(
    ("target", "trailing"),
    [
        pytest.param(b"/a", False, id="no-slash"),
        pytest.param(b"/a/", True, id="slash"),
        # RFC 3986 §5.2.4: a final dot segment leaves a trailing slash; nginx agrees (the
        # differential fuzzer found /file.bin/. served as the file).
        pytest.param(b"/file.bin/.", True, id="final-dot-is-a-directory-path"),
        pytest.param(b"/file.bin/zz/..", True, id="final-dotdot-is-a-directory-path"),
        pytest.param(b"/%2e", True, id="encoded-final-dot"),
        pytest.param(b"/a/..", True, id="final-dotdot-to-root"),
        pytest.param(b"/a/...", False, id="three-dots-is-a-name-no-slash"),
        pytest.param(b"/a/b?x=/.", False, id="dot-in-query-does-not-count"),
    ],
)
def test_trailing_slash_comes_from_the_normalized_path(target, trailing):
    assert parse_target(target).trailing_slash is trailing


@pytest.mark.parametrize(
    ("target", "prefix", "stripped"),
    [
        pytest.param(b"/files/a", b"/files", b"/a", id="origin-form-under-prefix"),
        pytest.param(b"/files", b"/files", None, id="the-mount-point-itself"),
        pytest.param(b"/a", b"/files", b"/a", id="without-prefix-unchanged"),
        pytest.param(b"http://h/files/sub", b"/files", b"/sub", id="absolute-form-under-prefix"),
        pytest.param(b"http://h/files?x", b"/files", None, id="absolute-form-mount-point"),
        pytest.param(b"http://h/a", b"/files", b"/a", id="absolute-form-without-prefix"),
    ],
)
def test_strip_root_path_accepts_both_target_forms(target, prefix, stripped):
    assert strip_root_path(target, prefix) == stripped


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"/a%00b", id="encoded-nul"),
        pytest.param(b"/a\x00b", id="raw-nul"),
        pytest.param(b"/%zz", id="invalid-percent-non-hex"),
        pytest.param(b"/%4", id="invalid-percent-one-digit"),
        pytest.param(b"/a%4/b", id="invalid-percent-one-digit-mid-path"),
        pytest.param(b"/a%", id="trailing-percent"),
        pytest.param(b"/%g0", id="invalid-percent-first-char"),
        pytest.param(b"/%ff", id="non-utf8-byte"),
        pytest.param(b"/\xff\xfe", id="raw-non-utf8-bytes"),
        pytest.param(b"/%c0%ae%c0%ae/x", id="overlong-utf8-dot"),
        pytest.param(b"/%c0%af", id="overlong-utf8-slash"),
        pytest.param(b"/%ed%a0%80", id="utf8-encoded-surrogate"),
        pytest.param(b"/%e2%82", id="truncated-utf8-sequence"),
        pytest.param(b"*", id="asterisk-form"),
        pytest.param(b"example.com:443", id="authority-form"),
        pytest.param(b"ftp://host/a", id="unsupported-scheme"),
    ],
)
def test_bad_target_raises_target_error_400(target):
    with pytest.raises(TargetError) as info:
        parse_target(target)
    assert info.value.status == STATUS_BAD_REQUEST


@pytest.mark.parametrize(
    ("target", "query"),
    [
        pytest.param(b"/a", b"", id="no-query-is-empty"),
        pytest.param(b"/a?", b"", id="empty-query"),
        pytest.param(b"/a?x=%20&y", b"x=%20&y", id="query-kept-raw-not-decoded"),
        pytest.param(b"/a?%zz", b"%zz", id="invalid-escape-in-query-is-not-an-error"),
        pytest.param(b"/a?x?y", b"x?y", id="second-question-mark-in-query"),
        pytest.param(b"/a?x#f", b"x", id="fragment-not-in-query"),
        pytest.param(b"http://h/a?q=1", b"q=1", id="absolute-form-query"),
    ],
)
def test_query_is_ignored_for_lookup_and_kept_raw(target, query):
    assert parse_target(target).query == query


@pytest.mark.parametrize(
    ("target", "hidden"),
    [
        pytest.param(b"/.env", True, id="dotfile-hidden"),
        pytest.param(b"/.git/config", True, id="dot-directory-hidden"),
        pytest.param(b"/visible/.hidden", True, id="nested-dotfile-hidden"),
        pytest.param(b"/%2eenv", True, id="encoded-dotfile-hidden"),
        pytest.param(b"/x/..%2f.env", True, id="dotfile-after-traversal-hidden"),
        pytest.param(b"/a/./b", False, id="single-dot-segment-not-hidden"),
        pytest.param(b"/a/../b", False, id="dotdot-segment-not-hidden"),
        pytest.param(b"/a.b/c.txt", False, id="inner-dot-not-hidden"),
        pytest.param(b"/", False, id="root-not-hidden"),
    ],
)
def test_hidden_is_true_for_any_dot_segment(target, hidden):
    assert parse_target(target).hidden is hidden


@pytest.mark.parametrize(
    ("target", "canonical"),
    [
        pytest.param(b"/", True, id="root-canonical"),
        pytest.param(b"/a/b", True, id="plain-canonical"),
        pytest.param(b"/a/b/", True, id="trailing-slash-canonical"),
        pytest.param(b"/a%20b", True, id="percent-encoded-char-canonical"),
        pytest.param(b"/a?x=1", True, id="query-does-not-affect-canonical"),
        pytest.param(b"/a/./b", False, id="single-dot-not-canonical"),
        pytest.param(b"/a/../b", False, id="dotdot-not-canonical"),
        pytest.param(b"/a/.", False, id="trailing-single-dot-not-canonical"),
        pytest.param(b"/a/..", False, id="trailing-dotdot-not-canonical"),
        pytest.param(b"/%2e%2e/a", False, id="encoded-dotdot-not-canonical"),
        pytest.param(b"//a", False, id="leading-double-slash-not-canonical"),
        pytest.param(b"/a//b", False, id="inner-double-slash-not-canonical"),
        pytest.param(b"/a//", False, id="trailing-double-slash-not-canonical"),
        pytest.param(b"//", False, id="root-double-slash-not-canonical"),
        pytest.param(b"/a%2fb", False, id="encoded-slash-not-canonical"),
        pytest.param(b"/a%2Fb", False, id="encoded-slash-uppercase-not-canonical"),
        pytest.param(b"/a%5cb", False, id="encoded-backslash-not-canonical"),
        pytest.param(b"/a%5Cb", False, id="encoded-backslash-uppercase-not-canonical"),
        pytest.param(
            b"/a\\b",
            False,
            id="raw-backslash-separator-not-canonical",
        ),
    ],
)
def test_canonical_is_false_when_raw_path_was_not_normalized(target, canonical):
    assert parse_target(target).canonical is canonical


@pytest.mark.parametrize(
    ("target", "trailing"),
    [
        pytest.param(b"/a", False, id="no-trailing-slash"),
        pytest.param(b"/a/", True, id="trailing-slash"),
        pytest.param(b"/a%2f", True, id="encoded-trailing-slash"),
        pytest.param(b"/", True, id="root-has-trailing-slash"),
    ],
)
def test_trailing_slash_reflects_decoded_path(target, trailing):
    assert parse_target(target).trailing_slash is trailing


def _resolved_path(request_target: bytes, location: str) -> str:
    """Where a client following ``location`` from ``request_target`` ends up (RFC 3986)."""
    base = "http://h" + request_target.split(b"?")[0].decode("latin-1")
    joined = urlsplit(urljoin(base, location))
    assert joined.scheme == "http" and joined.netloc == "h", location
    return unquote(joined.path)


@pytest.mark.parametrize(
    ("target", "location", "resolved"),
    [
        pytest.param(b"/dir", "dir/", "/dir/", id="canonical-gives-relative-name-slash"),
        pytest.param(b"/a/b/dir", "dir/", "/a/b/dir/", id="canonical-nested-relative"),
        pytest.param(b"/a%20b", "a%20b/", "/a b/", id="relative-is-percent-encoded"),
        pytest.param(b"/%C3%BC", "%C3%BC/", "/\u00fc/", id="relative-non-ascii-encoded-as-utf8"),
        pytest.param(b"/a%3fb", "a%3Fb/", "/a?b/", id="relative-question-mark-encoded"),
        pytest.param(b"/a%23b", "a%23b/", "/a#b/", id="relative-hash-encoded"),
        pytest.param(b"/x/../dir", "/dir/", "/dir/", id="dot-segments-give-absolute-path"),
        pytest.param(b"//dir", "/dir/", "/dir/", id="double-slash-gives-absolute-path"),
        pytest.param(b"/a%2fdir", "/a/dir/", "/a/dir/", id="encoded-slash-gives-absolute-path"),
        pytest.param(b"/a%5cdir", "/a/dir/", "/a/dir/", id="encoded-backslash-absolute-path"),
        pytest.param(b"/%2e%2e/%2e%2e/dir", "/dir/", "/dir/", id="encoded-dotdot-absolute"),
        pytest.param(b"/dir?x=1&y", "dir/?x=1&y", "/dir/", id="query-kept"),
        pytest.param(b"/dir?a%20b", "dir/?a%20b", "/dir/", id="query-escapes-not-doubled"),
        pytest.param(b"/dir?a b", "dir/?a%20b", "/dir/", id="query-space-encoded"),
        pytest.param(b"/dir?a\x01\x7fb", "dir/?a%01%7Fb", "/dir/", id="query-controls-encoded"),
        pytest.param(b"/dir?\xff", "dir/?%FF", "/dir/", id="query-non-ascii-encoded"),
        pytest.param(b"/d/../dir?q", "/dir/?q", "/dir/", id="absolute-with-query"),
        pytest.param(
            b"/a:b",
            None,
            "/a:b/",
            id="relative-name-with-colon-not-a-scheme",
        ),
        pytest.param(
            b"/dir\\sub",
            None,
            "/dir/sub/",
            id="raw-backslash-redirect-resolves-to-directory",
        ),
    ],
)
def test_directory_redirect_location_resolves_to_the_directory(target, location, resolved):
    path = parse_target(target)
    got = directory_redirect(path)
    if location is not None:
        assert got == location
    assert _resolved_path(target, got) == resolved
    assert all(0x21 <= ord(c) < 0x7F for c in got), "Location must be printable ASCII"


def test_directory_redirect_uses_prefix_only_for_absolute_form():
    assert directory_redirect(parse_target(b"/x/../dir"), prefix="/files") == "/files/dir/"
    assert directory_redirect(parse_target(b"/dir"), prefix="/files") == "dir/"


def test_directory_redirect_never_echoes_raw_control_bytes():
    path = RequestPath(("a\r\nSet-Cookie: x", "b c\x00"), False, b"q\r\nX: y", False)
    location = directory_redirect(path)
    assert "\r" not in location and "\n" not in location and " " not in location
    assert "\x00" not in location
    assert all(0x21 <= ord(c) < 0x7F for c in location)
