"""HTTP semantics over the real server, once per send path, with aiohttp as the client."""

from __future__ import annotations

import email.utils
import hashlib
import re

import aiohttp
import pytest

from server.http.conditional import make_etag
from server.http.httpdate import format_http_date

from .conftest import BIG_SIZE, SPARSE_MARK, SPARSE_MARK_OFFSET, SPARSE_SIZE, DataTree


@pytest.fixture
async def client():
    # One connection, so keep-alive and request order are exercised on every test.
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


def etag_of(tree: DataTree, rel: str) -> str:
    st = (tree.root / rel).stat()
    return make_etag(st.st_size, st.st_mtime_ns)


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges body strictly: CRLFs, boundary lines, closing line."""
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", content_type)
    assert m, content_type
    boundary = m.group(1).encode()
    assert len(boundary) >= 24  # >= 96 bits of hex
    delimiter = b"\r\n--" + boundary
    assert body.endswith(delimiter + b"--\r\n")
    chunks = body[: -len(b"--\r\n")].split(delimiter)
    assert chunks[0] == b""  # nothing before the first delimiter
    parts = []
    for chunk in chunks[1:]:
        if chunk == b"":
            continue
        assert chunk.startswith(b"\r\n")
        head, sep, data = chunk[2:].partition(b"\r\n\r\n")
        assert sep
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        parts.append((headers, data))
    return parts


# --- plain GET and HEAD ------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel, ctype",
    [
        ("hello.txt", "text/plain; charset=utf-8"),
        ("small.bin", "application/octet-stream"),
        ("medium.bin", "application/octet-stream"),
        ("page.html", "text/html; charset=utf-8"),
        ("data.json", "application/json"),
        ("noext", "application/octet-stream"),
    ],
)
async def test_get_returns_exact_bytes_and_headers(client, server, tree, rel, ctype):
    async with client.get(server.url("/" + rel)) as resp:
        body = await resp.read()
        assert resp.status == 200
        assert body == tree.files[rel]
        assert resp.headers["Content-Type"] == ctype
        assert resp.headers["Content-Length"] == str(len(tree.files[rel]))
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert resp.headers["ETag"] == etag_of(tree, rel)
        mtime = (tree.root / rel).stat().st_mtime
        assert resp.headers["Last-Modified"] == format_http_date(mtime)
        assert email.utils.parsedate_to_datetime(resp.headers["Date"])
        assert resp.headers["Server"] == "zerocopy-server"


async def test_big_file_is_byte_exact_and_uses_the_path_under_test(client, server, tree):
    async with client.get(server.url("/big.bin")) as resp:
        body = await resp.read()
    assert resp.status == 200
    assert len(body) == BIG_SIZE
    assert hashlib.sha256(body).digest() == hashlib.sha256(tree.files["big.bin"]).digest()
    server.wait_for_log("GET /big.bin -> 200")
    assert server.send_paths_for("/big.bin")[-1] == server.send_path


async def test_head_has_get_headers_and_no_body(client, server, tree):
    async with client.head(server.url("/big.bin")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(BIG_SIZE)
        assert resp.headers["ETag"] == etag_of(tree, "big.bin")
        assert await resp.read() == b""
    # The connection is still in sync: the next response is the right one.
    async with client.get(server.url("/hello.txt")) as resp:
        assert await resp.read() == tree.files["hello.txt"]


async def test_empty_file(client, server):
    async with client.get(server.url("/empty.bin")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "0"
        assert await resp.read() == b""


@pytest.mark.parametrize(
    "path, rel",
    [
        ("/space%20name.txt", "space name.txt"),
        ("/%C3%BCn%C3%AFcode.txt", "\u00fcn\u00efcode.txt"),
        ("/%252e%252e", "%2e%2e"),  # decoded once: the literal name "%2e%2e"
        ("/hello.txt?query=ignored&x=1", "hello.txt"),
        ("/link-inside.txt", "hello.txt"),
        ("/linkdir-inside/inner.txt", "dir/inner.txt"),
    ],
)
async def test_names_that_need_decoding(client, server, tree, path, rel):
    async with client.get(server.url(path)) as resp:
        assert resp.status == 200
        assert await resp.read() == tree.files[rel]


# --- directories -------------------------------------------------------------------------


async def test_directory_without_slash_redirects_relative_keeping_query(client, server):
    async with client.get(server.url("/dir?a=1&b=%20"), allow_redirects=False) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == "dir/?a=1&b=%20"
        assert resp.headers["Content-Length"] == "0"


async def test_nested_directory_redirect_is_relative_to_its_parent(client, server):
    async with client.get(server.url("/linkdir-inside"), allow_redirects=False) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == "linkdir-inside/"


async def test_directory_with_slash_serves_index(client, server, tree):
    async with client.get(server.url("/dir/")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert await resp.read() == tree.files["dir/index.html"]


async def test_directory_without_index_is_404(client, server):
    async with client.get(server.url("/noindex/")) as resp:
        assert resp.status == 404


# --- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status",
    [
        ("/missing.txt", 404),
        ("/.env", 404),
        ("/.git/config", 404),
        ("/visible/.hidden", 404),
        ("/link-to-dotfile", 404),  # a symlink whose target is a dotfile
        ("/link-outside.txt", 404),
        ("/linkdir-outside/file.txt", 404),
        ("/fifo", 403),
        ("/hello.txt/", 404),  # a file is not a directory
    ],
)
async def test_refused_paths(client, server, path, status):
    async with client.get(server.url(path)) as resp:
        body = await resp.read()
        assert resp.status == status
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert b"outside" not in body and b"SECRET" not in body


async def test_other_methods_get_405_with_allow(client, server):
    async with client.post(server.url("/hello.txt"), data=b"abc") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
    async with client.delete(server.url("/hello.txt")) as resp:
        assert resp.status == 405
    async with client.options(server.url("/hello.txt")) as resp:
        assert resp.status == 204
        assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
        # RFC 9110 §8.6: a 204 carries no Content-Length.
        assert "Content-Length" not in resp.headers


# --- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, start, stop",
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=3000000-", 3000000, BIG_SIZE),
        ("bytes=-500", BIG_SIZE - 500, BIG_SIZE),
        ("bytes=-99999999", 0, BIG_SIZE),  # suffix longer than the file: all of it
        ("bytes=100-99999999", 100, BIG_SIZE),  # end clamped to the last byte
        ("bytes=0-", 0, BIG_SIZE),
        ("BYTES = 5-9", 5, 10),
    ],
)
async def test_single_range(client, server, tree, spec, start, stop):
    async with client.get(server.url("/big.bin"), headers={"Range": spec}) as resp:
        body = await resp.read()
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{BIG_SIZE}"
        assert resp.headers["Content-Length"] == str(stop - start)
        assert body == tree.files["big.bin"][start:stop]


@pytest.mark.parametrize(
    "spec", [f"bytes={BIG_SIZE}-", f"bytes={BIG_SIZE + 5}-{BIG_SIZE + 9}", "bytes=-0"]
)
async def test_unsatisfiable_range_is_416_with_star_content_range(client, server, spec):
    async with client.get(server.url("/big.bin"), headers={"Range": spec}) as resp:
        body = await resp.read()
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{BIG_SIZE}"
        assert len(body) == int(resp.headers["Content-Length"]) < 100


@pytest.mark.parametrize("spec", ["bytes=abc", "bytes=5-1", "items=0-5", "bytes=", "bytes=1-2-3"])
async def test_invalid_range_syntax_is_ignored(client, server, tree, spec):
    async with client.get(server.url("/medium.bin"), headers={"Range": spec}) as resp:
        assert resp.status == 200
        assert await resp.read() == tree.files["medium.bin"]


async def test_range_on_empty_file_is_200_with_length_zero(client, server):
    async with client.get(server.url("/empty.bin"), headers={"Range": "bytes=0-"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "0"


async def test_head_ignores_range(client, server):
    async with client.head(server.url("/big.bin"), headers={"Range": "bytes=0-9"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(BIG_SIZE)
        assert "Content-Range" not in resp.headers


async def test_multiple_ranges_are_multipart_in_request_order(client, server, tree):
    data = tree.files["big.bin"]
    spec = "bytes=2000000-2199999,0-99,-300,500-599"
    async with client.get(server.url("/big.bin"), headers={"Range": spec}) as resp:
        body = await resp.read()
        assert resp.status == 206
        assert int(resp.headers["Content-Length"]) == len(body)
        assert "Content-Range" not in resp.headers
        parts = parse_multipart(body, resp.headers["Content-Type"])
    expected = [(2000000, 2200000), (0, 100), (BIG_SIZE - 300, BIG_SIZE), (500, 600)]
    assert len(parts) == len(expected)
    for (headers, payload), (start, stop) in zip(parts, expected, strict=True):
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-range"] == f"bytes {start}-{stop - 1}/{BIG_SIZE}"
        assert payload == data[start:stop]


async def test_overlapping_ranges_coalesce_into_a_single_part(client, server, tree):
    async with client.get(
        server.url("/big.bin"), headers={"Range": "bytes=0-99,50-149,150-199"}
    ) as resp:
        body = await resp.read()
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 0-199/{BIG_SIZE}"
        assert body == tree.files["big.bin"][:200]


async def test_too_many_ranges_get_the_whole_file(client, server, tree):
    spec = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(101))
    async with client.get(server.url("/medium.bin"), headers={"Range": spec}) as resp:
        assert resp.status == 200
        assert await resp.read() == tree.files["medium.bin"]


async def test_ranges_asking_more_than_the_file_get_the_whole_file(client, server, tree):
    spec = "bytes=0-,0-,0-"
    async with client.get(server.url("/medium.bin"), headers={"Range": spec}) as resp:
        assert resp.status == 200
        assert await resp.read() == tree.files["medium.bin"]


async def test_ranges_beyond_4gib(client, server):
    start, stop = SPARSE_MARK_OFFSET, SPARSE_MARK_OFFSET + len(SPARSE_MARK)
    headers = {"Range": f"bytes={start}-{stop - 1}"}
    async with client.get(server.url("/sparse.bin"), headers=headers) as resp:
        body = await resp.read()
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SPARSE_SIZE}"
        assert body == SPARSE_MARK
    server.wait_for_log("GET /sparse.bin -> 206")
    assert server.send_paths_for("/sparse.bin")[-1] == server.send_path
    # Two parts beyond 4 GiB, and the last bytes of the file (zeros, it is sparse).
    spec = f"bytes={start}-{start + 9},{stop - 10}-{stop - 1},-77"
    async with client.get(server.url("/sparse.bin"), headers={"Range": spec}) as resp:
        parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
    assert [p[1] for p in parts] == [SPARSE_MARK[:10], SPARSE_MARK[-10:], bytes(77)]
    assert (
        parts[2][0]["content-range"] == f"bytes {SPARSE_SIZE - 77}-{SPARSE_SIZE - 1}/{SPARSE_SIZE}"
    )


# --- conditional requests ------------------------------------------------------------------


async def test_if_none_match_gives_304_with_validators_and_no_body(client, server, tree):
    etag = etag_of(tree, "big.bin")
    async with client.get(
        server.url("/big.bin"), headers={"If-None-Match": f'"x", {etag}'}
    ) as resp:
        assert resp.status == 304
        assert resp.headers["ETag"] == etag
        assert "Last-Modified" in resp.headers and "Date" in resp.headers
        assert await resp.read() == b""
    weak = "W/" + etag  # If-None-Match compares weakly
    async with client.get(server.url("/big.bin"), headers={"If-None-Match": weak}) as resp:
        assert resp.status == 304


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"If-Match": '"nope"'}, 412),
        ({"If-Match": "*"}, 200),
        ({"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 412),
        ({"If-Unmodified-Since": "not a date"}, 200),  # invalid dates are ignored
        ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
        ({"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 200),
        ({"If-Modified-Since": "garbage"}, 200),
        ({"If-None-Match": "*"}, 304),
        # If-None-Match present: If-Modified-Since is not looked at (RFC 9110 §13.2.2).
        ({"If-None-Match": '"other"', "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 200),
    ],
)
async def test_preconditions(client, server, headers, status):
    async with client.get(server.url("/hello.txt"), headers=headers) as resp:
        await resp.read()
        assert resp.status == status


async def test_if_match_with_our_etag_passes_and_wrong_one_fails(client, server, tree):
    etag = etag_of(tree, "hello.txt")
    async with client.get(server.url("/hello.txt"), headers={"If-Match": etag}) as resp:
        assert resp.status == 200
    async with client.get(server.url("/hello.txt"), headers={"If-Match": "W/" + etag}) as resp:
        assert resp.status == 412  # If-Match compares strongly


async def test_if_range(client, server, tree):
    etag = etag_of(tree, "big.bin")
    lm = format_http_date((tree.root / "big.bin").stat().st_mtime)
    cases = [
        (etag, 206),
        ("W/" + etag, 200),  # a weak tag never matches If-Range
        ('"stale"', 200),
        (lm, 206),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 200),
    ]
    for if_range, status in cases:
        headers = {"Range": "bytes=10-19", "If-Range": if_range}
        async with client.get(server.url("/big.bin"), headers=headers) as resp:
            body = await resp.read()
            assert resp.status == status, if_range
            expected = tree.files["big.bin"][10:20] if status == 206 else tree.files["big.bin"]
            assert body == expected


async def test_preconditions_come_before_range(client, server):
    headers = {"Range": "bytes=0-1", "If-None-Match": "*"}
    async with client.get(server.url("/big.bin"), headers=headers) as resp:
        assert resp.status == 304


# --- errors and responses stay sane ---------------------------------------------------------


async def test_error_bodies_do_not_echo_the_request(client, server):
    async with client.get(server.url("/%3Cscript%3Ealert(1)%3C/script%3E")) as resp:
        body = await resp.read()
        assert resp.status == 404
        assert body == b"404 Not Found\n"


async def test_keep_alive_serves_many_requests_on_one_connection(server, tree):
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for rel in ["hello.txt", "big.bin", "small.bin", "medium.bin", "hello.txt"] * 3:
            async with session.get(server.url("/" + rel)) as resp:
                assert await resp.read() == tree.files[rel]
