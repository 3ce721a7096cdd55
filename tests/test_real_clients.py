"""The server against the real download clients people use: curl, wget and aria2c.

Every test runs once per send path (the module-scoped ``server`` fixture), downloads into
``tmp_path`` and compares the result byte for byte with what the data tree holds. Where a
test also checks which send path carried a body, it asks for a unique target
(``/big.bin?t=<hex>``: the query does not change the file) so that the server's debug log
line can only have come from this very request.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .conftest import BIG_SIZE, SPARSE_MARK, SPARSE_MARK_OFFSET, SPARSE_SIZE

CURL = shutil.which("curl")
WGET = shutil.which("wget")
ARIA2C = shutil.which("aria2c")

needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
needs_wget = pytest.mark.skipif(WGET is None, reason="wget is not installed")
needs_aria2c = pytest.mark.skipif(ARIA2C is None, reason="aria2c is not installed")

# Bodies above this go through the send path under test (the server's inline limit).
INLINE_MAX = 64 * 1024
# The client gives up after CLIENT_MAX_TIME; subprocess kills it a little later regardless.
CLIENT_MAX_TIME = 60
PROCESS_TIMEOUT = 90

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def _client_env() -> dict[str, str]:
    """The environment without proxies: the server is on loopback."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["no_proxy"] = env["NO_PROXY"] = "*"
    return env


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(cmd, capture_output=True, timeout=PROCESS_TIMEOUT, env=_client_env())
    if check and proc.returncode != 0:
        pytest.fail(
            f"{cmd!r} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr[-2000:]!r}"
        )
    return proc


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    # -q (first!) ignores any ~/.curlrc; -sS: no progress meter, but do print errors.
    assert CURL is not None
    return run([CURL, "-q", "-sS", "--max-time", str(CLIENT_MAX_TIME), *args], check=check)


def wget(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    assert WGET is not None
    return run(
        [WGET, "--no-config", "-q", f"--timeout={CLIENT_MAX_TIME}", "--tries=1", *args],
        check=check,
    )


def aria2c(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    assert ARIA2C is not None
    return run(
        [
            ARIA2C,
            "--no-conf",
            "--file-allocation=none",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--download-result=hide",
            f"--timeout={CLIENT_MAX_TIME}",
            "--max-tries=1",
            *args,
        ],
        check=check,
    )


def unique(path: str) -> str:
    """``path`` with a query no other request uses: its log lines are this test's own."""
    return f"{path}?t={uuid.uuid4().hex}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_same_bytes(actual: bytes, expected: bytes) -> None:
    """Byte-exact, with a readable failure (sizes and first difference) for large bodies."""
    if actual == expected:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
        min(len(actual), len(expected)),
    )
    pytest.fail(
        f"content differs: got {len(actual)} bytes (sha256 {sha256(actual)[:16]}), "
        f"expected {len(expected)} bytes (sha256 {sha256(expected)[:16]}); "
        f"first difference at offset {first}"
    )


_LOG_LINE = r"DEBUG zerocopy\.protocol: GET {target} -> (\d+), (\d+) body bytes via (\S+)"


def logged_responses(server, target: str) -> list[tuple[int, int, str]]:
    """(status, body bytes, send path) of each completed ``GET target`` in the debug log."""
    pattern = re.compile(_LOG_LINE.format(target=re.escape(target)))
    return [(int(s), int(n), p) for s, n, p in pattern.findall(server.stderr())]


def wait_logged(server, target: str, count: int = 1, timeout: float = 5.0):
    """Poll the debug log (written asynchronously) until ``count`` responses to ``target``."""
    deadline = time.monotonic() + timeout
    while True:
        found = logged_responses(server, target)
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def wait_send_paths(server, target: str, count: int = 1, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        paths = server.send_paths_for(target)
        if len(paths) >= count or time.monotonic() >= deadline:
            return paths
        time.sleep(0.02)


def parse_header_dump(text: str) -> list[tuple[int, dict[str, str]]]:
    """The responses in a ``curl -D`` dump (one per redirect hop): (status, headers)."""
    blocks: list[tuple[int, dict[str, str]]] = []
    for block in re.split(r"\r?\n\r?\n", text.strip()):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("HTTP/"):
            continue
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        blocks.append((status, headers))
    return blocks


def only_response(dump: Path | str) -> tuple[int, dict[str, str]]:
    text = dump.read_text("latin-1") if isinstance(dump, Path) else dump
    blocks = parse_header_dump(text)
    assert len(blocks) == 1, f"expected one response, got {text!r}"
    return blocks[0]


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def parse_byteranges(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges body strictly: each part's length comes from its own
    Content-Range, and exactly the delimiter must follow it (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary.encode("ascii")
    pos = body.find(delimiter)
    assert pos >= 0, "no boundary delimiter in the body"
    assert body[:pos] in (b"", b"\r\n"), f"unexpected preamble {body[:pos]!r}"
    parts: list[tuple[dict[str, str], bytes]] = []
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            assert body[pos + 2 :] in (b"", b"\r\n"), f"epilogue {body[pos + 2 :]!r}"
            return parts
        assert body[pos : pos + 2] == b"\r\n", f"bad delimiter line at {pos}"
        head_end = body.index(b"\r\n\r\n", pos + 2)
        headers: dict[str, str] = {}
        for line in body[pos + 2 : head_end].decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        m = _CONTENT_RANGE.match(headers.get("content-range", ""))
        assert m, f"part without a valid Content-Range: {headers!r}"
        length = int(m.group(2)) - int(m.group(1)) + 1
        data_start = head_end + 4
        data = body[data_start : data_start + length]
        assert len(data) == length, "part shorter than its Content-Range"
        parts.append((headers, data))
        pos = data_start + length
        assert body[pos : pos + 2 + len(delimiter)] == b"\r\n" + delimiter, (
            f"part data not followed by CRLF and the delimiter at {pos}"
        )
        pos += 2


# --- curl ----------------------------------------------------------------------------------


@needs_curl
def test_curl_full_download_uses_the_send_path(server, tree, tmp_path):
    target = unique("/big.bin")
    out = tmp_path / "big.bin"
    proc = curl("--fail", "-o", str(out), "-w", "%{http_code} %{size_download}", server.url(target))
    assert proc.stdout.decode() == f"200 {BIG_SIZE}"
    assert_same_bytes(out.read_bytes(), tree.files["big.bin"])
    paths = wait_send_paths(server, target)
    assert paths == [server.send_path], f"send paths logged for {target}: {paths}"


@needs_curl
@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [
        ("1000-1999", 1000, 2000),
        ("-500", BIG_SIZE - 500, BIG_SIZE),
        ("3000000-", 3000000, BIG_SIZE),
        ("0-0", 0, 1),
        (f"{BIG_SIZE - 1}-", BIG_SIZE - 1, BIG_SIZE),
    ],
)
def test_curl_single_range(server, tree, tmp_path, spec, start, stop):
    target = unique("/big.bin")
    out, dump = tmp_path / "part", tmp_path / "headers"
    curl("--fail", "-r", spec, "-D", str(dump), "-o", str(out), server.url(target))
    status, headers = only_response(dump)
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{stop - 1}/{BIG_SIZE}"
    assert int(headers["content-length"]) == stop - start
    assert_same_bytes(out.read_bytes(), tree.files["big.bin"][start:stop])
    if stop - start > INLINE_MAX:
        assert wait_send_paths(server, target) == [server.send_path]


@needs_curl
@pytest.mark.parametrize("have", [1, 1234567, BIG_SIZE - 100])
def test_curl_resume_then_resume_again_when_complete(server, tree, tmp_path, have):
    expected = tree.files["big.bin"]
    out, dump = tmp_path / "big.bin", tmp_path / "headers"
    out.write_bytes(expected[:have])

    curl("--fail", "-C", "-", "-D", str(dump), "-o", str(out), server.url("/big.bin"))
    status, headers = only_response(dump)
    assert status == 206
    assert headers["content-range"] == f"bytes {have}-{BIG_SIZE - 1}/{BIG_SIZE}"
    assert_same_bytes(out.read_bytes(), expected)
    mtime = out.stat().st_mtime_ns

    # Complete already: curl asks for "bytes=<size>-", the server says 416 with
    # "Content-Range: bytes */<size>", and curl takes that as "nothing left to get".
    # (No --fail here: curl < 8.5 wrongly exits 22 for -C - with --fail on exactly this
    # correct response, curl/curl#12174.)
    proc = curl(
        "-C", "-", "-D", str(dump), "-o", str(out), "-w", "%{http_code}", server.url("/big.bin")
    )
    assert proc.returncode == 0
    assert proc.stdout.decode() == "416"
    status, headers = only_response(dump)
    assert status == 416
    assert headers["content-range"] == f"bytes */{BIG_SIZE}"
    assert out.stat().st_size == BIG_SIZE, "the 416 body was appended to the download"
    assert_same_bytes(out.read_bytes(), expected)
    assert out.stat().st_mtime_ns == mtime


@needs_curl
@pytest.mark.parametrize(
    "ranges",
    [
        [(0, 99), (200, 299)],
        [(500, 599), (0, 99), (BIG_SIZE - 10, BIG_SIZE - 1)],  # parts in request order
        [(0, 99_999), (2_000_000, 2_099_999)],  # > inline limit: the send path's multipart
    ],
    ids=["two-small", "out-of-order", "large-parts"],
)
def test_curl_multi_range_is_multipart_byteranges(server, tree, tmp_path, ranges):
    expected = tree.files["big.bin"]
    target = unique("/big.bin")
    out, dump = tmp_path / "parts", tmp_path / "headers"
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    curl("--fail", "-r", spec, "-D", str(dump), "-o", str(out), server.url(target))
    status, headers = only_response(dump)
    assert status == 206
    assert "content-range" not in headers
    m = re.fullmatch(r"multipart/byteranges;\s*boundary=(\S+)", headers["content-type"])
    assert m, headers["content-type"]
    boundary = m.group(1).strip('"')
    body = out.read_bytes()
    assert int(headers["content-length"]) == len(body)

    parts = parse_byteranges(body, boundary)
    assert [p[0]["content-range"] for p in parts] == [
        f"bytes {a}-{b}/{BIG_SIZE}" for a, b in ranges
    ]
    single = curl("--fail", "-r", "0-0", "-D", "-", "-o", os.devnull, server.url("/big.bin"))
    file_type = only_response(single.stdout.decode("latin-1"))[1]["content-type"]
    for (part_headers, data), (a, b) in zip(parts, ranges, strict=True):
        assert part_headers["content-type"] == file_type
        assert_same_bytes(data, expected[a : b + 1])
    if sum(b - a + 1 for a, b in ranges) > INLINE_MAX:
        assert wait_send_paths(server, target) == [server.send_path]


@needs_curl
@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (SPARSE_MARK_OFFSET, SPARSE_MARK_OFFSET + len(SPARSE_MARK), SPARSE_MARK),
        (SPARSE_MARK_OFFSET - 10, SPARSE_MARK_OFFSET + 10, bytes(10) + SPARSE_MARK[:10]),
        (SPARSE_SIZE - 77, SPARSE_SIZE, bytes(77)),
    ],
    ids=["mark", "hole-edge", "tail"],
)
def test_curl_range_beyond_4gib_of_sparse_file(server, tmp_path, start, stop, expected):
    target = unique("/sparse.bin")
    out, dump = tmp_path / "part", tmp_path / "headers"
    # --max-filesize: a server that ignored the Range would otherwise send all 5 GiB.
    curl(
        "--fail",
        "--max-filesize",
        str(1024 * 1024),
        "-r",
        f"{start}-{stop - 1}",
        "-D",
        str(dump),
        "-o",
        str(out),
        server.url(target),
    )
    status, headers = only_response(dump)
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{stop - 1}/{SPARSE_SIZE}"
    assert_same_bytes(out.read_bytes(), expected)
    if stop - start > INLINE_MAX:
        assert wait_send_paths(server, target) == [server.send_path]


@needs_curl
def test_curl_head_and_if_none_match(server, tmp_path):
    proc = curl("--fail", "--head", server.url("/big.bin"))
    status, headers = only_response(proc.stdout.decode("latin-1"))
    assert status == 200
    assert int(headers["content-length"]) == BIG_SIZE
    assert headers["accept-ranges"] == "bytes"
    etag = headers.get("etag")
    assert etag and re.fullmatch(r'"[^"]+"', etag), f"no strong ETag: {etag!r}"
    assert headers.get("last-modified")

    proc = curl(
        "--fail",
        "-I",
        "-H",
        f"If-None-Match: {etag}",
        "-o",
        os.devnull,
        "-w",
        "%{http_code}",
        server.url("/big.bin"),
    )
    assert proc.stdout.decode() == "304"

    # A GET with the same validator: 304 and no body; a GET's ETag is the HEAD's.
    out, dump = tmp_path / "body", tmp_path / "headers"
    curl(
        "--fail",
        "-H",
        f"If-None-Match: {etag}",
        "-D",
        str(dump),
        "-o",
        str(out),
        server.url("/big.bin"),
    )
    status, headers = only_response(dump)
    assert status == 304
    assert headers["etag"] == etag
    assert not out.exists() or out.read_bytes() == b""

    proc = curl(
        "--fail",
        "-H",
        'If-None-Match: "something-else"',
        "-D",
        str(dump),
        "-o",
        str(out),
        server.url("/big.bin"),
    )
    status, headers = only_response(dump)
    assert status == 200
    assert headers["etag"] == etag
    assert out.stat().st_size == BIG_SIZE


@needs_curl
def test_curl_time_condition_from_downloaded_file(server, tree, tmp_path):
    """``curl -R`` keeps Last-Modified as the file's mtime; ``-z file`` then gets 304."""
    first, second = tmp_path / "first", tmp_path / "second"
    curl("--fail", "-R", "-o", str(first), server.url("/big.bin"))
    assert_same_bytes(first.read_bytes(), tree.files["big.bin"])
    source_mtime = int((tree.root / "big.bin").stat().st_mtime)
    assert int(first.stat().st_mtime) == source_mtime

    target = unique("/big.bin")
    proc = curl(
        "--fail", "-z", str(first), "-o", str(second), "-w", "%{http_code}", server.url(target)
    )
    assert proc.stdout.decode() == "304"
    assert not second.exists() or second.read_bytes() == b""
    # curl fakes a 304 itself when a 200's Last-Modified fails the condition: ask the server.
    assert [(s, n) for s, n, _ in wait_logged(server, target)] == [(304, 0)]


@needs_curl
def test_curl_follows_directory_redirect(server, tree, tmp_path):
    out, dump = tmp_path / "index", tmp_path / "headers"
    proc = curl(
        "--fail",
        "-L",
        "-D",
        str(dump),
        "-o",
        str(out),
        "-w",
        "%{num_redirects} %{url_effective}",
        server.url("/dir"),
    )
    assert out.read_bytes() == tree.files["dir/index.html"]
    redirects, effective = proc.stdout.decode().split(" ", 1)
    assert redirects == "1"
    assert effective == server.url("/dir/")
    responses = parse_header_dump(dump.read_text("latin-1"))
    assert [status for status, _ in responses] == [301, 200]
    assert responses[0][1]["location"] == "dir/"
    assert responses[1][1]["content-type"].startswith("text/html")


@needs_curl
def test_curl_reuses_one_connection_across_large_and_small_bodies(server, tree, tmp_path):
    """Several transfers in one curl run share a keep-alive connection; a body sent by the
    send path must leave the connection in step for the next response."""
    names = ["big.bin", "hello.txt", "big.bin", "medium.bin", "big.bin"]
    args: list[str] = ["--fail", "-w", "%{num_connects}\\n"]
    for i, name in enumerate(names):
        args += ["-o", str(tmp_path / f"{i}-{name}"), server.url(f"/{name}")]
    proc = curl(*args)
    connects = proc.stdout.decode().split()
    assert connects == ["1"] + ["0"] * (len(names) - 1), f"new connections: {connects}"
    for i, name in enumerate(names):
        assert_same_bytes((tmp_path / f"{i}-{name}").read_bytes(), tree.files[name])


@needs_curl
def test_curl_http10_download(server, tree, tmp_path):
    target = unique("/big.bin")
    out = tmp_path / "big.bin"
    curl("--fail", "-0", "-o", str(out), server.url(target))
    assert_same_bytes(out.read_bytes(), tree.files["big.bin"])
    # The access log (stdout) shows the request really was HTTP/1.0.
    server.wait_for_log(f'"GET {target} HTTP/1.0" 200 {BIG_SIZE}', stream="stdout")
    assert wait_send_paths(server, target) == [server.send_path]


# --- wget ----------------------------------------------------------------------------------


@needs_wget
def test_wget_full_download(server, tree, tmp_path):
    target = unique("/big.bin")
    out = tmp_path / "big.bin"
    wget("-O", str(out), server.url(target))
    assert_same_bytes(out.read_bytes(), tree.files["big.bin"])
    assert wait_send_paths(server, target) == [server.send_path]


@needs_wget
@pytest.mark.parametrize("have", [1, 1_000_000, BIG_SIZE - 100])
def test_wget_continue_partial_then_complete(server, tree, tmp_path, have):
    expected = tree.files["big.bin"]
    out = tmp_path / "big.bin"
    out.write_bytes(expected[:have])
    target = unique("/big.bin")
    wget("-c", "-O", str(out), server.url(target))
    assert_same_bytes(out.read_bytes(), expected)
    # One 206 carrying only what was missing: wget did continue, not start over.
    responses = wait_logged(server, target)
    assert [(s, n) for s, n, _ in responses] == [(206, BIG_SIZE - have)]
    if BIG_SIZE - have > INLINE_MAX:
        assert responses[0][2] == server.send_path

    # Nothing left: the server's 416 tells wget the file is fully retrieved.
    target = unique("/big.bin")
    wget("-c", "-O", str(out), server.url(target))
    assert_same_bytes(out.read_bytes(), expected)
    assert [s for s, _, _ in wait_logged(server, target)] == [416]


# --- aria2c --------------------------------------------------------------------------------


@needs_aria2c
def test_aria2c_split_download(server, tree, tmp_path):
    target = unique("/big.bin")
    aria2c(
        "-x4",
        "-s4",
        "-k1M",
        "--allow-overwrite=true",
        "-d",
        str(tmp_path),
        "-o",
        "out",
        server.url(target),
    )
    assert_same_bytes((tmp_path / "out").read_bytes(), tree.files["big.bin"])
    assert not (tmp_path / "out.aria2").exists()
    # aria2c fetched segments with Range requests on parallel connections.
    deadline = time.monotonic() + 5
    while not any(s == 206 for s, _, _ in logged_responses(server, target)):
        assert time.monotonic() < deadline, (
            f"no 206 among {logged_responses(server, target)} for a split download"
        )
        time.sleep(0.02)


@needs_aria2c
def test_aria2c_continue_partial(server, tree, tmp_path):
    expected = tree.files["big.bin"]
    have = 1_234_567
    (tmp_path / "out").write_bytes(expected[:have])
    target = unique("/big.bin")
    # No --allow-overwrite: with it and no control file, aria2c starts over from zero.
    aria2c("-c", "-d", str(tmp_path), "-o", "out", server.url(target))
    assert_same_bytes((tmp_path / "out").read_bytes(), expected)
    # aria2c resumes from a piece boundary at or below what it has: one 206 for the rest.
    deadline = time.monotonic() + 5
    while True:
        partial = [n for s, n, _ in logged_responses(server, target) if s == 206]
        if partial or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    assert len(partial) == 1, logged_responses(server, target)
    assert BIG_SIZE - have <= partial[0] < BIG_SIZE
