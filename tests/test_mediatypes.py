"""Content-Type from a file name's extension."""

from __future__ import annotations

import pytest

from server.http.mediatypes import DEFAULT_TYPE, content_type


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("index.html", "text/html; charset=utf-8", id="html-is-text-with-charset"),
        pytest.param("INDEX.HTML", "text/html; charset=utf-8", id="extension-case-insensitive"),
        pytest.param("Index.Html", "text/html; charset=utf-8", id="extension-mixed-case"),
        pytest.param("notes.txt", "text/plain; charset=utf-8", id="txt-text-plain-charset"),
        pytest.param("app.js", "text/javascript; charset=utf-8", id="js-pinned-text-javascript"),
        pytest.param("mod.mjs", "text/javascript; charset=utf-8", id="mjs-pinned"),
        pytest.param("data.json", "application/json", id="json-no-charset"),
        pytest.param("logo.svg", "image/svg+xml; charset=utf-8", id="svg-textual-gets-charset"),
        pytest.param("a.wasm", "application/wasm", id="wasm-pinned"),
        pytest.param("a.tar.gz", "application/gzip", id="last-extension-wins"),
        pytest.param("a.TGZ", "application/gzip", id="override-case-insensitive"),
        pytest.param("film.mp4", "video/mp4", id="mp4-pinned"),
        pytest.param("file.unknownext", DEFAULT_TYPE, id="unknown-extension-octet-stream"),
        pytest.param("noext", DEFAULT_TYPE, id="no-extension-octet-stream"),
        pytest.param("trailingdot.", DEFAULT_TYPE, id="trailing-dot-octet-stream"),
        pytest.param(".html", DEFAULT_TYPE, id="dotfile-name-is-not-an-extension"),
        pytest.param("", DEFAULT_TYPE, id="empty-name-octet-stream"),
    ],
)
def test_content_type_from_extension(name, expected):
    assert content_type(name) == expected


def test_default_type_is_octet_stream():
    assert DEFAULT_TYPE == "application/octet-stream"


def test_content_type_is_stable_across_calls():
    first = [content_type(n) for n in ("a.html", "a.HTML", "b.bin", "c")]
    assert first == [content_type(n) for n in ("a.html", "a.HTML", "b.bin", "c")]
