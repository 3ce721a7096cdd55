"""--cors: cross-origin range reads from browsers.

Raw requests pin the fields (allowed, disallowed, ``*``, preflight, errors, the cache);
then a real headless Chromium runs ``fetch()`` with a ``Range`` header from a page of
another origin (a second server on another port) and reads ``Content-Range`` and the
bytes, and the same from a disallowed origin fails in the browser, as it must.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.http.cors import EXPOSED_HEADERS, parse_origins

from .rawhttp import exchange, get
from .serverproc import REPO, ServerProcess

DATA = bytes(range(256)) * 400  # 102,400 bytes: above the inline limit too
PAGE = b"<!doctype html><title>reader</title><p>cross-origin reader</p>\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cors")
    (base / "data.bin").write_bytes(DATA)
    (base / "small.txt").write_bytes(b"small\n")
    return base


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--cors", "http://a.example, https://b.example:8443"]
    with ServerProcess(root, args, logdir=tmp_path_factory.mktemp("logs")) as srv:
        yield srv


def origin(value: str) -> str:
    return f"Origin: {value}\r\n"


def test_an_allowed_origin_may_read_every_answer(server: ServerProcess) -> None:
    data = (
        get("/data.bin", extra=origin("http://a.example"))
        + get("/data.bin", extra=origin("http://a.example") + "Range: bytes=10-19\r\n")
        + get("/missing", extra=origin("https://b.example:8443"))
    )
    r, _ = exchange(server.port, data, expect=3)
    assert [x.status for x in r] == [200, 206, 404]
    assert r[0].header("access-control-allow-origin") == "http://a.example"
    assert r[0].header("access-control-expose-headers") == EXPOSED_HEADERS
    assert "Origin" in r[0].header_all("vary")
    assert r[1].header("access-control-allow-origin") == "http://a.example"
    assert bytes(r[1].body) == DATA[10:20]
    assert r[2].header("access-control-allow-origin") == "https://b.example:8443"


def test_a_disallowed_origin_gets_no_cors_fields(server: ServerProcess) -> None:
    for other in ("http://evil.example", "http://a.example.evil", "null"):
        r, _ = exchange(server.port, get("/small.txt", extra=origin(other)))
        assert r[0].status == 200
        assert r[0].header("access-control-allow-origin") is None
        assert r[0].header("access-control-expose-headers") is None


def test_without_origin_the_answer_varies_but_grants_nothing(server: ServerProcess) -> None:
    for _ in range(3):  # the second and third from the file cache: the same fields
        r, _ = exchange(server.port, get("/small.txt"))
        assert r[0].header("access-control-allow-origin") is None
        assert "Origin" in r[0].header_all("vary")  # caches keep the variants apart
    r, _ = exchange(server.port, get("/small.txt", extra=origin("http://a.example")))
    assert r[0].header("access-control-allow-origin") == "http://a.example"


def test_preflight(server: ServerProcess) -> None:
    ask = "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n"
    r, _ = exchange(
        server.port,
        get("/data.bin", method="OPTIONS", extra=origin("http://a.example") + ask)
        + get("/data.bin", method="OPTIONS", extra=origin("http://evil.example") + ask)
        + get(
            "/data.bin",
            method="OPTIONS",
            extra=origin("http://a.example") + "Access-Control-Request-Method: DELETE\r\n",
        ),
        expect=3,
    )
    assert [x.status for x in r] == [204, 204, 204]
    ok = r[0]
    assert ok.header("access-control-allow-origin") == "http://a.example"
    assert ok.header("access-control-allow-methods") == "GET, HEAD"
    assert "Range" in ok.header("access-control-allow-headers")
    assert int(ok.header("access-control-max-age")) > 0
    assert ok.header("content-length") is None  # a 204
    for refused in r[1:]:
        assert refused.header("access-control-allow-origin") is None


def test_star_allows_every_origin_without_vary(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--cors", "*"], logdir=tmp_path) as srv:
        r, _ = exchange(srv.port, get("/small.txt", extra=origin("http://anyone.example")))
    assert r[0].header("access-control-allow-origin") == "*"
    assert "Origin" not in r[0].header_all("vary")


@pytest.mark.parametrize("bad", ["", "a.example", "ftp://x", "*, http://a", "http://a/path"])
def test_bad_origins_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_origins(bad)


def test_a_bad_cors_option_is_a_usage_error(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(root), "--cors", "not-an-origin"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2 and "--cors" in done.stderr and "Traceback" not in done.stderr


# --- in a real browser ----------------------------------------------------------------------

try:
    from .test_browser import CHROMEDRIVER, CHROMIUM, Browser
except ImportError:  # pragma: no cover - test_browser always imports
    CHROMIUM = CHROMEDRIVER = None

FETCH = """
window.__result = null;
fetch(arguments[0], {headers: {Range: "bytes=10-19"}})
  .then(async r => {
    const body = new Uint8Array(await r.arrayBuffer());
    window.__result = {status: r.status, range: r.headers.get("Content-Range"),
                       etag: r.headers.get("ETag"), bytes: Array.from(body)};
  })
  .catch(e => { window.__result = {error: String(e)}; });
"""


def _fetch_from_page(browser: Browser, page: str, url: str) -> dict:
    browser.get(page)
    browser.js(FETCH, url)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = browser.js("return window.__result;")
        if result is not None:
            return result
        time.sleep(0.05)
    raise AssertionError("fetch() never settled")


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)
def test_a_page_of_another_origin_reads_a_range_in_a_real_browser(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    site = tmp_path_factory.mktemp("site")
    (site / "page.html").write_bytes(PAGE)
    logs = tmp_path_factory.mktemp("browser-logs")
    with ServerProcess(site, [], logdir=logs) as page_server:
        page_origin = f"http://127.0.0.1:{page_server.port}"
        page = f"{page_origin}/page.html"
        allowed = ServerProcess(root, ["--cors", page_origin], logdir=logs)
        refused = ServerProcess(root, ["--cors", "http://elsewhere.example"], logdir=logs)
        browser = Browser(tmp_path_factory.mktemp("browser"))
        with allowed, refused:
            try:
                browser.start()
                ok = _fetch_from_page(browser, page, allowed.url("/data.bin"))
                denied = _fetch_from_page(browser, page, refused.url("/data.bin"))
            finally:
                browser.stop()
            # The request did reach the refusing server: the browser is what said no.
            assert "GET /data.bin -> 206" in refused.stderr()
    assert ok.get("error") is None, json.dumps(ok)
    assert ok["status"] == 206
    assert ok["range"] == f"bytes 10-19/{len(DATA)}"
    assert ok["etag"]  # exposed, so the page can resume with If-Range
    assert bytes(ok["bytes"]) == DATA[10:20]
    assert "error" in denied and "TypeError" in denied["error"], denied
