"""Download features: precompressed variants, Content-Disposition, Repr-Digest, rate limits,
metrics and the JSON access log, over the send paths where they apply."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import socket
import statistics
import time
import urllib.request
from pathlib import Path

import pytest

from server.http.conditional import make_etag

from .rawhttp import connect, exchange, get, read_responses
from .serverproc import SEND_PATHS, ServerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ftree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("features")
    # Hex compresses to about half: every variant stays above the 64 KiB inline limit.
    text = b"".join(b"var x%d = '%s';\n" % (i, os.urandom(16).hex().encode()) for i in range(20000))
    (root / "app.js").write_bytes(text)
    (root / "app.js.gz").write_bytes(gzip.compress(text))
    (root / "app.js.br").write_bytes(b"pretend-brotli:" + gzip.compress(text))  # bytes only
    (root / "small.css").write_bytes(b"body{color:red}\n")
    (root / "small.css.gz").write_bytes(gzip.compress(b"body{color:red}\n"))
    (root / "stale.txt.gz").write_bytes(gzip.compress(b"old"))
    (root / "stale.txt").write_bytes(b"new content\n")
    old = time.time() - 3600
    os.utime(root / "stale.txt.gz", (old, old))  # older than its original: never served
    (root / 'r\u00e9sum\u00e9 "q".txt').write_bytes(b"cv\n")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "one.bin").write_bytes(os.urandom(1024 * 1024))
    return root


# --- precompressed variants ------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(SEND_PATHS))
def pre(request, ftree, tmp_path_factory):
    args, send_path = SEND_PATHS[request.param]
    logdir = tmp_path_factory.mktemp("pre-logs")
    with ServerProcess(ftree, [*args, "--precompressed", "br,zstd,gzip"], logdir=logdir) as srv:
        srv.send_path = send_path  # type: ignore[attr-defined]
        yield srv


def test_variant_by_preference_with_its_own_etag(pre, ftree):
    r, _ = exchange(pre.port, get("/app.js", extra="Accept-Encoding: gzip, br\r\n"))
    resp = r[0]
    assert resp.status == 200
    assert resp.header("content-encoding") == "br"  # both accepted: the server's order
    assert bytes(resp.body) == (ftree / "app.js.br").read_bytes()
    assert resp.header("content-type") == "text/javascript; charset=utf-8"  # the original's
    assert resp.header("vary") == "Accept-Encoding"
    st = (ftree / "app.js.br").stat()
    assert resp.header("etag") == make_etag(st.st_size, st.st_mtime_ns, "br")
    pre.wait_for_log("GET /app.js -> 200")
    assert pre.send_paths_for("/app.js")[-1] == pre.send_path  # zero-copy still applies


@pytest.mark.parametrize(
    "accept, encoding, source",
    [
        ("gzip", "gzip", "app.js.gz"),
        ("br;q=0.5, gzip", "gzip", "app.js.gz"),
        ("br;q=0, gzip;q=0", None, "app.js"),
        ("identity", None, "app.js"),
        (None, None, "app.js"),
        ("*", "br", "app.js.br"),
    ],
)
def test_accept_encoding_negotiation(pre, ftree, accept, encoding, source):
    extra = f"Accept-Encoding: {accept}\r\n" if accept is not None else ""
    r, _ = exchange(pre.port, get("/app.js", extra=extra))
    assert r[0].header("content-encoding") == encoding
    assert bytes(r[0].body) == (ftree / source).read_bytes()
    assert r[0].header("vary") == "Accept-Encoding"  # on identity responses too


def test_ranges_apply_to_the_variants_bytes(pre, ftree):
    gz = (ftree / "app.js.gz").read_bytes()
    extra = "Accept-Encoding: gzip\r\nRange: bytes=10-109\r\n"
    r, _ = exchange(pre.port, get("/app.js", extra=extra))
    assert r[0].status == 206 and r[0].header("content-encoding") == "gzip"
    assert r[0].header("content-range") == f"bytes 10-109/{len(gz)}"
    assert bytes(r[0].body) == gz[10:110]


def test_stale_variant_and_refused_identity(pre, ftree):
    r, _ = exchange(pre.port, get("/stale.txt", extra="Accept-Encoding: gzip\r\n"))
    assert r[0].header("content-encoding") is None and bytes(r[0].body) == b"new content\n"
    r, _ = exchange(pre.port, get("/stale.txt", extra="Accept-Encoding: gzip, identity;q=0\r\n"))
    assert r[0].status == 406


def test_small_files_negotiate_too(pre, ftree):
    r, _ = exchange(pre.port, get("/small.css", extra="Accept-Encoding: gzip\r\n") * 2, expect=2)
    assert [x.header("content-encoding") for x in r] == ["gzip", "gzip"]
    r, _ = exchange(pre.port, get("/small.css") * 2, expect=2)  # no header: identity, cached
    assert [bytes(x.body) for x in r] == [b"body{color:red}\n"] * 2
    assert all(x.header("vary") == "Accept-Encoding" for x in r)


def test_conditional_on_a_variant(pre, ftree):
    r, _ = exchange(pre.port, get("/app.js", extra="Accept-Encoding: gzip\r\n"))
    etag = r[0].header("etag")
    extra = f"Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"
    r, _ = exchange(pre.port, get("/app.js", extra=extra))
    assert r[0].status == 304 and r[0].header("vary") == "Accept-Encoding"
    # The identity representation has another tag: the variant's does not match it.
    r, _ = exchange(pre.port, get("/app.js", extra=f"If-None-Match: {etag}\r\n"))
    assert r[0].status == 200


def test_off_by_default(ftree, tmp_path):
    with ServerProcess(ftree, [], logdir=tmp_path) as srv:
        r, _ = exchange(srv.port, get("/app.js", extra="Accept-Encoding: gzip, br\r\n"))
    assert r[0].header("content-encoding") is None and r[0].header("vary") is None


# --- Content-Disposition -----------------------------------------------------------------------


def test_download_query_and_attachment_flag(ftree, tmp_path):
    name = 'r\u00e9sum\u00e9 "q".txt'
    target = "/r%C3%A9sum%C3%A9%20%22q%22.txt"
    with ServerProcess(ftree, [], logdir=tmp_path) as srv:
        r, _ = exchange(
            srv.port, get(target + "?download") + get(target) + get(target + "?download"), expect=3
        )
    expected = (
        "attachment; filename=\"r_sum_ _q_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22.txt"
    )
    assert r[0].header("content-disposition") == expected
    assert r[1].header("content-disposition") is None
    assert r[2].header("content-disposition") == expected  # from the cache, same header
    assert bytes(r[0].body) == (ftree / name).read_bytes()
    with ServerProcess(ftree, ["--attachment"], logdir=tmp_path) as srv:
        r, _ = exchange(srv.port, get("/big.bin", method="HEAD"), head_requests=[True])
    assert r[0].header("content-disposition").startswith('attachment; filename="big.bin"')


# --- Repr-Digest --------------------------------------------------------------------------------


def sha256_field(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def wait_for_digest(port: int, target: str, timeout: float = 30.0) -> str:
    """GET ``target`` until a response carries Repr-Digest (computed in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _ = exchange(port, get(target, method="HEAD"), head_requests=[True])
        if r[0].header("repr-digest") is not None:
            return r[0].header("repr-digest")
        exchange(port, get(target))  # a whole-file GET (re)starts the computation
        time.sleep(0.05)
    raise AssertionError(f"no Repr-Digest for {target} in {timeout} s")


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
def test_repr_digest(ftree, tmp_path, path_name):
    args, _ = SEND_PATHS[path_name]
    big = (ftree / "big.bin").read_bytes()
    with ServerProcess(ftree, [*args, "--digest", "sha-256"], logdir=tmp_path) as srv:
        assert wait_for_digest(srv.port, "/big.bin") == sha256_field(big)
        data = (
            get("/big.bin")
            + get("/big.bin", method="HEAD")
            + get("/small.css")
            + get("/small.css")
            + get("/big.bin", extra="Range: bytes=0-9\r\n")
            + get("/big.bin", extra="Want-Repr-Digest: sha-512=5\r\n", method="HEAD")
            + get("/big.bin", extra="Want-Repr-Digest: sha-256=3, sha-512=9\r\n", method="HEAD")
        )
        heads = [False, True, False, False, False, True, True]
        r, _ = exchange(srv.port, data, expect=7, head_requests=heads)
    assert bytes(r[0].body) == big
    assert r[0].header("repr-digest") == sha256_field(big)
    assert r[1].header("repr-digest") == sha256_field(big)  # HEAD: the same field
    assert (
        r[2].header("repr-digest")
        == r[3].header("repr-digest")
        == sha256_field(b"body{color:red}\n")
    )
    assert r[4].status == 206 and r[4].header("repr-digest") == sha256_field(big)  # of the whole
    assert r[5].header("repr-digest") is None  # the client wants another algorithm only
    assert r[6].header("repr-digest") == sha256_field(big)


def test_head_and_ranges_never_start_hashing(ftree, tmp_path):
    """Only a whole-file GET starts a digest: HEADs and ranges of a file never hashed go
    out without Repr-Digest, and leave it unhashed."""
    # A file of its own: digests are kept with files (xattrs), and big.bin has one by now.
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes((ftree / "big.bin").read_bytes())
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path) as srv:
        for _ in range(3):
            data = get("/big.bin", method="HEAD") + get("/big.bin", extra="Range: bytes=0-0\r\n")
            r, _ = exchange(srv.port, data, expect=2, head_requests=[True, False])
            assert [x.header("repr-digest") for x in r] == [None, None]
            time.sleep(0.1)  # a computation, had one started, would be done by now
        expected = sha256_field((ftree / "big.bin").read_bytes())
        assert wait_for_digest(srv.port, "/big.bin") == expected


def test_hashing_big_files_does_not_slow_other_clients(ftree, tmp_path):
    """The review's reproduction, scaled to the test: HEADs and GETs of multi-GiB files,
    dropped at once, used to queue full-file hashes on the executor that listings and
    cold reads use (a listing went from 5 ms to 37.8 s). Hashing now runs in its own
    low-priority pool, no response waits for it, and others' latency stays put."""
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    for i in range(3):
        with open(root / f"huge{i}.bin", "wb") as f:
            f.truncate(2 * 1024**3)  # 2 GiB of zeros each: seconds of hashing
    (root / "hello.txt").write_bytes(b"hi\n")
    (root / "dir" / "a.txt").write_bytes(b"a")
    args = ["--digest", "sha-256", "--autoindex"]
    with ServerProcess(root, args, logdir=tmp_path / "logs") as srv:

        def latencies() -> tuple[list[float], list[float]]:
            small, listing = [], []
            with connect(srv.port) as other:
                for i in range(20):
                    target = "/dir/" if i % 4 == 0 else "/hello.txt"
                    start = time.monotonic()
                    other.sendall(get(target))
                    r, _ = read_responses(other, close_wait=0.0)
                    assert r[0].status == 200
                    (listing if target == "/dir/" else small).append(time.monotonic() - start)
            return small, listing

        before_small, before_listing = latencies()
        started = time.monotonic()
        for i in range(3):  # whole-file GETs start the hashing; each answered at once
            for method in ("HEAD", "GET"):
                with connect(srv.port) as drop:
                    drop.sendall(get(f"/huge{i}.bin", method=method))
                    head = drop.recv(4096)
                    assert head.startswith(b"HTTP/1.1 200 ") and b"Repr-Digest" not in head
        assert time.monotonic() - started < 2.0  # nobody waited for a 2 GiB hash
        during_small, during_listing = latencies()
        # A few ms by the medians, with a wide margin for a noisy 2-core machine.
        assert statistics.median(during_small) < statistics.median(before_small) + 0.02
        assert statistics.median(during_listing) < statistics.median(before_listing) + 0.05
        assert max(during_small + during_listing) < 0.5, (during_small, during_listing)
        # The work was done all the same, in the background: a later response has it.
        assert wait_for_digest(srv.port, "/huge0.bin", timeout=60).startswith("sha-256=:")


# --- rate limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
def test_limit_rate_paces_every_send_path(ftree, tmp_path, path_name):
    args, send_path = SEND_PATHS[path_name]
    args = [*args, "--limit-rate", "512k", "--limit-rate-after", "256k"]
    with ServerProcess(ftree, args, logdir=tmp_path) as srv:
        start = time.monotonic()
        r, _ = exchange(srv.port, get("/one.bin"), timeout=30)
        took = time.monotonic() - start
        srv.wait_for_log("GET /one.bin -> 200")
        assert srv.send_paths_for("/one.bin") == [send_path]  # still zero-copy where it was
    assert bytes(r[0].body) == (ftree / "one.bin").read_bytes()
    # 768 KiB at 512 KiB/s after the first 256 KiB: 1.5 s.
    assert 1.3 < took < 3.0, took


# --- metrics ------------------------------------------------------------------------------------


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


@pytest.mark.parametrize("path_name", ["uvloop-sendfile", "buffered"])
def test_metrics_endpoint(ftree, tmp_path, path_name):
    args, send_path = SEND_PATHS[path_name]
    mport = free_port()
    with ServerProcess(ftree, [*args, "--metrics", f"127.0.0.1:{mport}"], logdir=tmp_path) as srv:
        srv.wait_for_log("metrics at")
        before = scrape(mport)
        exchange(srv.port, get("/big.bin") + get("/small.css") + get("/nope"), expect=3)
        held = socket.create_connection(("127.0.0.1", srv.port))
        time.sleep(0.2)
        after = scrape(mport)
        held.close()
        r, _ = exchange(mport, get("/other"))
        assert r[0].status == 404
    assert "zerocopy_requests_total{" not in before  # a fresh server
    assert metric(after, "zerocopy_requests_total", method="GET", status="200") == 2
    assert metric(after, "zerocopy_requests_total", method="GET", status="404") == 1
    assert metric(after, "zerocopy_body_bytes_total", path=send_path) == 3 * 1024 * 1024
    zero = metric(after, "zerocopy_sendfile_bytes_total")
    assert zero == (3 * 1024 * 1024 if send_path == "sendfile" else 0)
    assert metric(after, "zerocopy_connections_active") >= 1
    assert metric(after, "zerocopy_connections_rejected_total") == 0
    assert metric(after, "zerocopy_file_cache_misses_total") >= 1  # small.css, first time
    assert metric(after, "zerocopy_response_seconds_count") >= 3
    assert metric(after, "zerocopy_response_seconds_bucket", le="+Inf") >= 3


# --- JSON access log ------------------------------------------------------------------------------


def test_json_access_log(ftree, tmp_path):
    with ServerProcess(ftree, ["--access-log-format", "json"], logdir=tmp_path) as srv:
        exchange(srv.port, get('/small.css?q="x"', extra="User-Agent: agent \xe9\r\n"))
        exchange(srv.port, b"GET / HTTP/1.1\r\n\r\n")  # refused: no Host
        out = srv.wait_for_log('"status":400', stream="stdout")
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    ok = next(r for r in records if r["status"] == 200)
    assert ok["method"] == "GET" and ok["target"] == '/small.css?q="x"'
    assert ok["user_agent"] == "agent \xe9" and ok["bytes"] == 16 and ok["client"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ok["time"])
    refused = next(r for r in records if r["status"] == 400)
    assert refused["method"] is None and refused["target"] is None


# --- directory listings (server side; tests/test_browser.py drives a real browser) -------------


@pytest.fixture(scope="module")
def listing_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("listing")
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_bytes(b"a" * 10)
    (root / "big.bin").write_bytes(b"x" * 5000)
    (root / "small.txt").write_bytes(b"s")
    (root / "<b>bold<b>.txt").write_bytes(b"b")
    (root / ".secret").write_bytes(b"no")
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_bytes(b"<p>index</p>")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "x.txt").write_bytes(b"out")
    os.symlink(outside / "x.txt", root / "link-out.txt")
    huge = root / "huge"
    huge.mkdir()
    for i in range(20000):
        os.close(os.open(huge / f"f{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    return root


@pytest.fixture(scope="module")
def lsrv(listing_tree, tmp_path_factory):
    with ServerProcess(listing_tree, ["--autoindex"], logdir=tmp_path_factory.mktemp("l")) as s:
        yield s


def test_html_listing_escapes_and_hides(lsrv):
    r, _ = exchange(lsrv.port, get("/"))
    page = bytes(r[0].body).decode()
    assert r[0].status == 200 and r[0].header("content-type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in r[0].header("content-security-policy")
    assert "<b>bold" not in page and "&lt;b&gt;bold&lt;b&gt;.txt" in page
    assert ".secret" not in page and "link-out" not in page
    for name in ("docs/", "big.bin", "small.txt", "huge/"):
        assert name in page


def test_json_listing_by_accept_or_query(lsrv):
    for req in (
        get("/", extra="Accept: application/json\r\n"),
        get("/?format=json&sort=size&order=desc"),
    ):
        r, _ = exchange(lsrv.port, req)
        data = json.loads(bytes(r[0].body))
        names = [e["name"] for e in data["entries"]]
        assert "docs" in names and ".secret" not in names and "link-out.txt" not in names
    files = [e for e in data["entries"] if not e["is_dir"]]
    assert [e["name"] for e in files][:1] == ["big.bin"]  # size, descending
    big = next(e for e in files if e["name"] == "big.bin")
    assert big["size"] == 5000 and big["url"] == "/big.bin"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", big["mtime"])


def test_index_html_wins_and_files_are_still_files(lsrv):
    r, _ = exchange(lsrv.port, get("/withindex/") + get("/docs/a.txt") + get("/docs"), expect=3)
    assert bytes(r[0].body) == b"<p>index</p>"
    assert bytes(r[1].body) == b"a" * 10
    assert (r[2].status, r[2].header("location")) == (301, "docs/")


def test_unclean_path_is_redirected_before_listing(lsrv):
    r, _ = exchange(lsrv.port, get("//docs//"))
    assert (r[0].status, r[0].header("location")) == (301, "/docs/")


def test_listing_without_autoindex_is_404(listing_tree, tmp_path):
    with ServerProcess(listing_tree, [], logdir=tmp_path) as srv:
        r, _ = exchange(srv.port, get("/docs/"))
    assert r[0].status == 404


def test_a_big_directory_is_scanned_off_the_loop(lsrv):
    with connect(lsrv.port) as big, connect(lsrv.port) as other:
        big.sendall(get("/huge/?format=json") * 3)
        latencies = []
        for _ in range(10):
            start = time.monotonic()
            other.sendall(get("/small.txt"))
            r, _ = read_responses(other, close_wait=0.0)
            latencies.append(time.monotonic() - start)
            assert bytes(r[0].body) == b"s"
        r, _ = read_responses(big, expect=3, timeout=30, close_wait=0.0)
    assert len(json.loads(bytes(r[0].body))["entries"]) == 10000  # capped
    assert json.loads(bytes(r[0].body))["truncated"] is True
    assert max(latencies) < 0.25, latencies
