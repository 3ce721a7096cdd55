"""The ``--autoindex`` listing in a real headless Chromium, driven over W3C WebDriver.

The system ``chromedriver`` is spoken to with plain ``urllib`` (no selenium): the page is
loaded, screenshotted, read through the DOM, and navigated with real clicks on its links
and column headers. Dark mode is emulated through chromedriver's CDP pass-through, and the
browser console (where CSP violations land) must stay free of errors.

The module is skipped when ``chromium`` or ``chromedriver`` is not installed; ``.ci/run``
installs both with apt. Screenshots go to ``test-artifacts/`` (git-ignored) for a human eye.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .serverproc import REPO, ServerProcess

ARTIFACTS = REPO / "test-artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find("CHROMIUM_BIN", "chromium", "chromium-browser")
CHROMEDRIVER = _find("CHROMEDRIVER_BIN", "chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)

# Loopback only: a proxy from the environment must never see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# --- the tree ---------------------------------------------------------------------------------

BIG_NAME = "big random.bin"
BIG_SIZE = 1024 * 1024
UNICODE_NAME = "\u00fcn\u00efcode \u2713.txt"  # "ünïcode ✓.txt"
# A file name cannot hold "/", so the markup-like names have no closing tags.
MARKUP_NAMES = ("<b>bold.txt", "<img src=x onerror=alert(1)>.txt", "say \"hi\" & 'bye'.txt")
SUBDIR = "sub dir"
SUB_FILES = {"inner.txt": b"inner file\n", "nested data.csv": b"a,b\n1,2\n3,4\n"}


def _build_tree(root: Path) -> dict[str, bytes]:
    """The listed directory; returns the files at its top level with their content."""
    files = {
        "readme.txt": b"plain text\n",
        "space name.txt": b"a name with a space\n" * 10,
        UNICODE_NAME: "ünïcode ✓ content\n".encode() * 50,
        "medium.dat": bytes(range(256)) * 64,  # 16 KiB
        BIG_NAME: random.Random(20240601).randbytes(BIG_SIZE),
        **{name: f"markup-like name {i}\n".encode() for i, name in enumerate(MARKUP_NAMES)},
    }
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).write_bytes(content)
    (root / SUBDIR).mkdir()
    for name, content in SUB_FILES.items():
        (root / SUBDIR / name).write_bytes(content)
    # Never listed (dotfiles are denied by default).
    (root / ".hidden").write_bytes(b"secret\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]\n")
    return files


# --- a minimal WebDriver client ---------------------------------------------------------------

T = TypeVar("T")


class WebDriverError(AssertionError):
    def __init__(self, status: int, value: Any) -> None:
        self.error = value.get("error", "") if isinstance(value, dict) else ""
        message = value.get("message", value) if isinstance(value, dict) else value
        super().__init__(f"WebDriver {status} {self.error}: {str(message)[:500]}")


def _wait(what: str, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Browser:
    """One chromedriver process and one Chromium session, stopped by the PIDs started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.driver: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.session = ""
        self.has_log_endpoint = True

    # process life cycle

    def start(self) -> Browser:
        assert CHROMEDRIVER is not None and CHROMIUM is not None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        log = self.workdir / "chromedriver.log"
        # Chromium's crash database and dconf cache would otherwise land in $HOME.
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
        }
        # Its own process group, so Chromium and its helpers can be ended with it.
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait("chromedriver to be ready", self._ready, timeout=15)
        profile = self.workdir / "chromium-profile"
        profile.mkdir()
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-extensions",
            "--no-proxy-server",
            "--window-size=1200,800",
            "--force-device-scale-factor=1",
            "--lang=en-US",
            f"--user-data-dir={profile}",
        ]
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }
            }
        }
        value = self._call("POST", "/session", caps, timeout=45)
        self.session = value["sessionId"]
        self.cmd("POST", "/timeouts", {"pageLoad": 15_000, "script": 5_000, "implicit": 0})
        return self

    def _ready(self) -> bool:
        assert self.driver is not None
        if self.driver.poll() is not None:
            raise AssertionError(f"chromedriver exited with status {self.driver.returncode}")
        try:
            return bool(self._call("GET", "/status", timeout=2).get("ready"))
        except (OSError, WebDriverError):
            return False

    def stop(self) -> None:
        try:
            if self.session:
                with contextlib.suppress(OSError, WebDriverError):
                    self._call("DELETE", f"/session/{self.session}", timeout=15)
        finally:
            self.session = ""
            if self.driver is not None:
                pgid = self.driver.pid  # the group leader: start_new_session
                if self.driver.poll() is None:
                    self.driver.terminate()
                    try:
                        self.driver.wait(10)
                    except subprocess.TimeoutExpired:
                        self.driver.kill()
                        self.driver.wait(5)
                # Anything of Chromium's left behind in the group we created.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                self._end_strays()

    def _strays(self) -> list[int]:
        """Live processes whose command line names our private work directory: Chromium's
        crash handlers start their own sessions, outside the process group."""
        mark = str(self.workdir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def _end_strays(self) -> None:
        if not Path("/proc/self/cmdline").exists():
            return
        deadline = time.monotonic() + 5
        while self._strays() and time.monotonic() < deadline:
            time.sleep(0.05)  # they normally exit on their own once Chromium is gone
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    # protocol

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 20) -> Any:
        data = json.dumps({} if body is None else body).encode() if method == "POST" else None
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                payload = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                value = json.loads(raw).get("value", {})
            except ValueError:
                value = {"message": raw.decode("utf-8", "replace")}
            raise WebDriverError(exc.code, value) from None
        return payload.get("value") if isinstance(payload, dict) else payload

    def cmd(self, method: str, path: str, body: Any = None, timeout: float = 20) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body, timeout)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return self.cmd("GET", "/url")

    def js(self, script: str, *args: Any) -> Any:
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, xpath: str) -> dict[str, str]:
        return self.cmd("POST", "/element", {"using": "xpath", "value": xpath})

    def click(self, xpath: str) -> None:
        element = self.find(xpath)
        self.cmd("POST", f"/element/{element[ELEMENT_KEY]}/click")

    def screenshot(self, *paths: Path) -> bytes:
        png = base64.b64decode(self.cmd("GET", "/screenshot", timeout=30))
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        return png

    def cdp(self, command: str, params: dict[str, Any]) -> Any:
        """A Chrome DevTools Protocol command through chromedriver's pass-through."""
        return self.cmd("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def console(self) -> list[dict[str, Any]] | None:
        """Browser console entries since the last call; None if the driver cannot tell."""
        if not self.has_log_endpoint:
            return None
        try:
            return self.cmd("POST", "/se/log", {"type": "browser"})
        except WebDriverError as exc:
            if exc.error in ("unknown command", "unknown method", "unsupported operation"):
                self.has_log_endpoint = False
                return None
            raise


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path, dict]]:
    base = tmp_path_factory.mktemp("browser-site")
    root = base / "root"
    files = _build_tree(root)
    with ServerProcess(root, ["--autoindex"], logdir=base / "logs") as server:
        yield server, root, files
        assert server.loop_errors() == [], server.stderr()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("browser"))
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def clean_console(browser: Browser) -> Iterator[None]:
    """No console errors (CSP violations, failed loads, script errors) during the test."""
    browser.console()  # drop what earlier tests left
    yield
    entries = browser.console()
    if entries is None:
        return  # this chromedriver has no log endpoint: nothing to assert on
    bad = [e for e in entries if e.get("level") in ("SEVERE", "WARNING")]
    assert bad == [], json.dumps(bad, indent=1, ensure_ascii=False)


# --- DOM readers (reading only: navigation is by real clicks) -------------------------------

_NAMES_JS = (
    "return Array.from(document.querySelectorAll('tbody tr.d span.nm, tbody tr.f span.nm'))"
    ".map(function(e){return e.textContent})"
)
_ROWS_JS = """
return Array.from(document.querySelectorAll('tbody tr.f')).map(function(tr){
  return {name: tr.querySelector('span.nm').textContent,
          bytes: tr.querySelector('td.s').getAttribute('title')};
});
"""
_OVERFLOW_JS = "var e = document.documentElement; return e.scrollWidth - e.clientWidth"
_HREF_JS = """
var spans = document.querySelectorAll('tbody span.nm');
for (var i = 0; i < spans.length; i++)
  if (spans[i].textContent === arguments[0]) return spans[i].closest('a').href;
return null;
"""


def _xpath_literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal (which has no escapes)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{p}'" for p in parts) + ")"


def _entry_link(name: str) -> str:
    """XPath of the link whose visible name is exactly ``name`` (``sub/`` for directories)."""
    return f"//tbody//td[@class='n']/a[span[@class='nm'] = {_xpath_literal(name)}]"


def _fetch(url: str) -> tuple[int, bytes]:
    with _OPENER.open(url, timeout=20) as response:
        return response.status, response.read()


# --- tests ------------------------------------------------------------------------------------


def test_listing_renders_escapes_and_screenshots(
    browser: Browser, site: tuple[ServerProcess, Path, dict], tmp_path: Path, clean_console: None
) -> None:
    server, _root, files = site
    browser.get(server.url("/"))
    _wait("the listing to load", lambda: browser.js("return document.readyState") == "complete")

    png = browser.screenshot(ARTIFACTS / "autoindex-listing.png", tmp_path / "listing.png")
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000, len(png)  # a rendered page, not a blank square
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 800 and height >= 500, (width, height)

    assert "Index of /" in browser.js("return document.title")
    assert browser.js("return document.querySelector('h1').textContent") == "Index of /"

    names = browser.js(_NAMES_JS)
    expected = sorted([f"{SUBDIR}/", *files])
    assert sorted(names) == expected
    assert names[0] == f"{SUBDIR}/"  # directories first
    assert not any(n.startswith(".") for n in names)
    page_text = browser.js("return document.body.innerText")
    assert ".hidden" not in page_text and ".git" not in page_text

    # Markup-like names are text in the DOM: no element was made from them, and every
    # link's text is the literal name.
    assert (
        browser.js("return document.querySelectorAll('main b, main img, main script').length") == 0
    )
    for name in MARKUP_NAMES:
        assert browser.js(_HREF_JS, name), f"no link whose text is {name!r}"
    assert browser.js("return document.scripts.length") == 1  # only the page's own script

    # The page's one script ran (its CSP hash matched): the curl hints carry the origin.
    origins = browser.js(
        "return Array.from(document.querySelectorAll('span.o')).map(function(e){"
        "return e.textContent})"
    )
    assert origins and set(origins) == {server.url("/").rstrip("/")}, origins

    # Sizes shown to the user, exact bytes in the title.
    rows = {r["name"]: r["bytes"] for r in browser.js(_ROWS_JS)}
    assert rows == {name: f"{len(content)} bytes" for name, content in files.items()}
    footer = browser.js("return document.querySelector('footer').textContent")
    assert footer.startswith(f"1 directory, {len(files)} files"), footer

    # Nothing overflows the viewport sideways.
    overflow = browser.js(_OVERFLOW_JS)
    assert overflow <= 0, f"horizontal overflow of {overflow}px"


def test_real_clicks_navigate_and_sort(
    browser: Browser, site: tuple[ServerProcess, Path, dict], clean_console: None
) -> None:
    server, _root, files = site
    browser.get(server.url("/"))

    browser.click(_entry_link(f"{SUBDIR}/"))
    sub_url = server.url("/sub%20dir/")
    _wait("the subdirectory page", lambda: browser.url == sub_url)
    _wait(
        "the subdirectory listing",
        lambda: sorted(browser.js(_NAMES_JS)) == sorted(SUB_FILES) or None,
    )
    assert "Index of /sub dir/" in browser.js("return document.title")
    crumbs = browser.js("return document.querySelector('h1 .crumbs').textContent")
    assert crumbs == f"/{SUBDIR}/", crumbs

    browser.click("//tbody/tr[@class='up']//a[@title='Parent directory']")
    _wait("the root page again", lambda: browser.url == server.url("/"))
    _wait("the root listing", lambda: len(browser.js(_NAMES_JS)) == len(files) + 1)

    # Into the subdirectory and back up through the breadcrumb's root link.
    browser.click(_entry_link(f"{SUBDIR}/"))
    _wait("the subdirectory page", lambda: browser.url == sub_url)
    browser.click("//h1//a[. = '/']")
    _wait("the root page via the breadcrumb", lambda: browser.url == server.url("/"))

    # A header click sorts by size, biggest first (the first click on "Size" is descending).
    browser.click("//thead//th[@class='s']/a")
    _wait("the size-sorted page", lambda: browser.url.endswith("/?sort=size&order=desc"))
    rows = browser.js(_ROWS_JS)
    assert rows[0]["name"] == BIG_NAME, rows
    sizes = [int(r["bytes"].split()[0]) for r in rows]
    assert sizes == sorted(sizes, reverse=True), rows
    assert browser.js("return document.querySelector('th.s').getAttribute('aria-sort')") == (
        "descending"
    )
    assert browser.js(_NAMES_JS)[0] == f"{SUBDIR}/"  # directories stay first

    # Clicking it again flips the order.
    browser.click("//thead//th[@class='s']/a")
    _wait("the ascending size order", lambda: browser.url.endswith("/?sort=size&order=asc"))
    assert browser.js(_ROWS_JS)[-1]["name"] == BIG_NAME


def test_download_links_fetch_the_right_bytes(
    browser: Browser, site: tuple[ServerProcess, Path, dict], clean_console: None
) -> None:
    server, root, files = site
    browser.get(server.url("/"))
    for name in (BIG_NAME, UNICODE_NAME, "space name.txt", *MARKUP_NAMES):
        href = browser.js(_HREF_JS, name)
        assert href and href.startswith(server.url("/")), (name, href)
        status, body = _fetch(href)
        assert status == 200, (name, href, status)
        assert body == files[name] == (root / name).read_bytes(), (name, href, len(body))
    assert browser.js(_HREF_JS, UNICODE_NAME) == server.url("/%C3%BCn%C3%AFcode%20%E2%9C%93.txt")

    # The same holds for a file inside the subdirectory, reached by a real click.
    browser.click(_entry_link(f"{SUBDIR}/"))
    _wait("the subdirectory page", lambda: browser.url.endswith("/sub%20dir/"))
    for name, content in SUB_FILES.items():
        href = _wait(f"the link of {name}", lambda n=name: browser.js(_HREF_JS, n))
        assert _fetch(href) == (200, content), href


def test_dark_mode(
    browser: Browser, site: tuple[ServerProcess, Path, dict], tmp_path: Path, clean_console: None
) -> None:
    server, _, _ = site
    colors = (
        "var b = getComputedStyle(document.body), a = document.querySelector('tbody a');"
        "return [b.backgroundColor, b.color, getComputedStyle(a).color]"
    )
    browser.cdp("Emulation.setEmulatedMedia", {"features": []})
    browser.get(server.url("/"))
    light = browser.js(colors)
    try:
        browser.cdp(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        _wait(
            "dark mode",
            lambda: browser.js("return matchMedia('(prefers-color-scheme: dark)').matches"),
        )
        dark = browser.js(colors)
        png = browser.screenshot(
            ARTIFACTS / "autoindex-listing-dark.png", tmp_path / "listing-dark.png"
        )
    finally:
        browser.cdp("Emulation.setEmulatedMedia", {"features": []})
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    # The page's palette: --bg, --fg and --link of each scheme.
    assert light == ["rgb(255, 255, 255)", "rgb(31, 35, 40)", "rgb(9, 105, 218)"], light
    assert dark == ["rgb(13, 17, 23)", "rgb(230, 237, 243)", "rgb(68, 147, 248)"], dark


@pytest.mark.parametrize(
    "width",
    [
        390,  # a phone: the curl hints and clock times are hidden
        800,  # mid width: long curl hints scroll inside their cell, the table fits
        1200,
    ],
)
def test_listing_fits_narrow_windows(
    browser: Browser,
    site: tuple[ServerProcess, Path, dict],
    tmp_path: Path,
    width: int,
    clean_console: None,
) -> None:
    server, _, files = site
    browser.cmd("POST", "/window/rect", {"width": width, "height": 800})
    try:
        browser.get(server.url("/"))
        browser.screenshot(
            ARTIFACTS / f"autoindex-listing-{width}px.png", tmp_path / f"listing-{width}px.png"
        )
        assert sorted(browser.js(_NAMES_JS)) == sorted([f"{SUBDIR}/", *files])
        if width < 640:
            hidden = browser.js(
                "return Array.from(document.querySelectorAll('code.dl, span.t'))"
                ".every(function(e){return getComputedStyle(e).display === 'none'})"
            )
            assert hidden
        overflow = browser.js(_OVERFLOW_JS)
        assert overflow <= 0, f"horizontal overflow of {overflow}px at {width}px"
    finally:
        browser.cmd("POST", "/window/rect", {"width": 1200, "height": 800})
