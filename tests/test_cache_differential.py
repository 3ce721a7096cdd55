"""Differential test: the small-file response cache never changes an answer.

For every combination of the options that shape a file response (precompressed variants,
Repr-Digest, attachment, a root path, autoindex: 32 in all), the real server runs twice on
the same tree, once as usual (cache on) and once with ``--no-cache``, and both get the same
requests in the same order over raw sockets. Every response must be the same, status line,
header fields in order and body, except for ``Date`` and the random boundary of a
``multipart/byteranges`` body (normalised in the field and the body before comparing).

A cache is filled by one request and read by a later one, so order matters: the corpus
(every target with every kind of request: plain, HEAD, Want-Repr-Digest, ranges,
preconditions, Accept-Encoding, ``?download``, HTTP/1.0, ``Connection: close``) goes out
forward, reversed and in a seeded shuffle, pipelined in batches on keep-alive connections,
and once more with one request per connection. Within a target, a request that opts out
of the digest is followed at once by plain ones: the server has both rules, "may be
answered from the cache" and "may fill the cache", and what one request puts in the cache
must be right for every request the cache then answers.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import itertools
import os
import random
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from .rawhttp import connect, get
from .serverproc import ServerProcess

TIMEOUT = 5.0  # every socket operation, and every whole response
BATCH = 16  # requests pipelined at once on a keep-alive connection
ROOT_PATH = "/mnt"
SHUFFLE_SEED = 20240607
SHOWN_MISMATCHES = 3  # in full in the failure message; the rest as one line each

# (test-id token, server options) of the five switches; each case turns some of them on.
SWITCHES: list[tuple[str, list[str]]] = [
    ("pb", ["--precompressed", "br,gzip"]),
    ("d", ["--digest", "sha-256"]),
    ("a", ["--attachment"]),
    ("r", ["--root-path", ROOT_PATH]),
    ("i", ["--autoindex"]),
]

# Requested with every kind of request below (and under ROOT_PATH too, when it is set).
TARGETS = [
    "/note.txt",  # small text
    "/blob.bin",  # small binary, 4 KiB
    "/style.css",  # with newer .br and .gz siblings
    "/style.css.gz",  # a sibling asked for by its own name
    "/sub/deep.txt",  # in a subdirectory
    "/withindex/",  # a directory with index.html
    "/noindex/",  # a directory without: 404, or a listing with --autoindex
    "/empty.txt",  # no bytes at all
    "/missing.txt",  # 404
    "/sub",  # a directory without its slash: 301
]

# Fixed times (ns), so that ETags, Last-Modified and listings are the same run after run.
MTIME_NS = 1_700_000_000_123_456_789
VARIANT_MTIME_NS = MTIME_NS + 60 * 10**9  # the precompressed siblings are newer


@dataclass(frozen=True)
class Variant:
    """One kind of request; ``{etag}`` and ``{etags}`` in ``fields`` are filled per target."""

    label: str
    method: str = "GET"
    fields: str = ""
    query: str = ""
    version: str = "1.1"
    closes: bool = False  # the server closes the connection after answering it


VARIANTS: list[Variant] = [
    Variant("plain"),
    Variant("plain", "HEAD"),
    # The digest opt-out, then plain requests at once: what the first leaves in the cache
    # must be right for the next ones.
    Variant("digest opt-out", fields="Want-Repr-Digest: sha-256=0\r\n"),
    Variant("plain after the opt-out"),
    Variant("plain after the opt-out", "HEAD"),
    Variant("digest opt-out", "HEAD", "Want-Repr-Digest: sha-256=0\r\n"),
    Variant("plain after the HEAD opt-out"),
    Variant("digest wanted", fields="Want-Repr-Digest: sha-256=5\r\n"),
    Variant("one range", fields="Range: bytes=0-3\r\n"),
    Variant("two ranges", fields="Range: bytes=0-1,4-5\r\n"),
    Variant("unsatisfiable range", fields="Range: bytes=100000-\r\n"),
    Variant("If-None-Match own ETag", fields="If-None-Match: {etag}\r\n"),
    Variant("If-None-Match own ETag", "HEAD", "If-None-Match: {etag}\r\n"),
    Variant("If-None-Match every variant's ETag", fields="If-None-Match: {etags}\r\n"),
    Variant("If-None-Match wrong", fields='If-None-Match: "nope"\r\n'),
    Variant("If-None-Match *", fields="If-None-Match: *\r\n"),
    Variant(
        "If-Modified-Since future", fields="If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"
    ),
    Variant(
        "If-Modified-Since past", fields="If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
    ),
    Variant("If-Match wrong", fields='If-Match: "nope"\r\n'),
    Variant(
        "If-Unmodified-Since past", fields="If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
    ),
    Variant("If-Range wrong + Range", fields='If-Range: "nope"\r\nRange: bytes=0-3\r\n'),
    Variant("If-Range own ETag + Range", fields="If-Range: {etag}\r\nRange: bytes=0-3\r\n"),
    Variant("Accept-Encoding br", fields="Accept-Encoding: br\r\n"),
    Variant("Accept-Encoding br", "HEAD", "Accept-Encoding: br\r\n"),
    Variant("Accept-Encoding gzip", fields="Accept-Encoding: gzip\r\n"),
    Variant("Accept-Encoding identity;q=0", fields="Accept-Encoding: identity;q=0\r\n"),
    Variant("plain after negotiation"),
    Variant("download query", query="?download"),
    Variant("download query", "HEAD", query="?download"),
    Variant("HTTP/1.0 keep-alive", fields="Connection: keep-alive\r\n", version="1.0"),
    Variant("Connection: close", fields="Connection: close\r\n", closes=True),
    Variant("plain, last"),
]


@dataclass(frozen=True)
class Req:
    label: str
    data: bytes
    head: bool
    closes: bool


@dataclass(frozen=True)
class Response:
    status_line: str
    fields: tuple[tuple[str, str], ...]  # (lower-cased name, value), in order
    body: bytes


CLOSED = Response("<connection closed before a complete response>", (), b"")


def case_id(on: tuple[bool, ...]) -> str:
    return "-".join(token for (token, _), flag in zip(SWITCHES, on, strict=True) if flag) or "none"


def case_args(on: tuple[bool, ...]) -> list[str]:
    return [arg for (_, args), flag in zip(SWITCHES, on, strict=True) if flag for arg in args]


CASES = [
    pytest.param(case_args(on), id=case_id(on))
    for on in itertools.product((False, True), repeat=len(SWITCHES))
]


# --- the data tree ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diff_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache-diff") / "root"
    css = b"body { color: #123456; margin: 0 auto; }\n" * 20
    files = {
        "note.txt": b"a small text file, well under the cache's size limit\n",
        "blob.bin": random.Random(7).randbytes(4096),
        "style.css": css,
        "style.css.gz": gzip.compress(css, mtime=0),
        "style.css.br": b"pretend-brotli:" + gzip.compress(css, mtime=0),  # bytes only
        "sub/deep.txt": b"deeper down\n",
        "withindex/index.html": b"<!doctype html><title>index</title><p>index page</p>\n",
        "withindex/other.txt": b"next to an index\n",
        "noindex/a.txt": b"listed\n",
        "noindex/b.bin": bytes(range(256)),
        "empty.txt": b"",
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        mtime = VARIANT_MTIME_NS if rel.endswith((".br", ".gz")) else MTIME_NS
        os.utime(path, ns=(mtime, mtime))
    for directory in ("sub", "withindex", "noindex", "."):
        os.utime(root / directory, ns=(MTIME_NS, MTIME_NS))
    return root


# --- talking to the servers ------------------------------------------------------------------


def read_response(sock: socket.socket, buf: bytearray, head: bool, deadline: float) -> Response:
    """The next response on ``sock`` (``buf`` holds what was read beyond the last one).

    Framed by Content-Length (the server always sends it), no body for HEAD, 1xx, 204
    and 304. CLOSED when the connection ends first.
    """
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if not _receive(sock, buf, deadline):
            return CLOSED
    status_line, *lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    fields = []
    for line in lines:
        name, _, value = line.partition(":")
        fields.append((name.lower(), value.strip(" \t")))
    status = int(status_line.split(" ", 2)[1])
    length = 0
    if not (head or status in (204, 304) or 100 <= status < 200):
        length = int(next((v for k, v in fields if k == "content-length"), "0"))
    while len(buf) < length:
        if not _receive(sock, buf, deadline):
            return CLOSED
    body = bytes(buf[:length])
    del buf[:length]
    return Response(status_line, tuple(fields), body)


def _receive(sock: socket.socket, buf: bytearray, deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"no complete response within {TIMEOUT}s")
    sock.settimeout(remaining)
    try:
        data = sock.recv(1 << 16)
    except ConnectionResetError:
        return False
    buf += data
    return bool(data)


def one_per_connection(port: int, requests: list[Req]) -> list[Response]:
    responses = []
    for req in requests:
        with connect(port, timeout=TIMEOUT) as sock:
            sock.sendall(req.data)
            responses.append(read_response(sock, bytearray(), req.head, time.monotonic() + TIMEOUT))
    return responses


def pipelined(port: int, requests: list[Req]) -> list[Response]:
    """Batches of up to BATCH requests on keep-alive connections; a new one after a close."""
    responses: list[Response] = []
    sock: socket.socket | None = None
    i = 0
    try:
        while i < len(requests):
            batch = requests[i : i + BATCH]
            cut = next((n for n, req in enumerate(batch) if req.closes), len(batch) - 1)
            batch = batch[: cut + 1]  # nothing pipelined behind a request that closes
            if sock is None:
                sock = connect(port, timeout=TIMEOUT)
            sock.sendall(b"".join(req.data for req in batch))
            buf = bytearray()
            answered: list[Response] = []
            for req in batch:
                answered.append(read_response(sock, buf, req.head, time.monotonic() + TIMEOUT))
                if answered[-1] is CLOSED:
                    break
            closed = answered[-1] is CLOSED
            answered += [CLOSED] * (len(batch) - len(answered))
            responses += answered
            if closed or batch[-1].closes:
                sock.close()
                sock = None
            i += len(batch)
    finally:
        if sock is not None:
            sock.close()
    return responses


# --- the corpus ------------------------------------------------------------------------------


def spellings(target: str, root_path: bool) -> list[str]:
    """The target, and with a root path the target under it too (both are served)."""
    return [target, ROOT_PATH + target] if root_path else [target]


def request(variant: Variant, spelled: str, tags: list[str]) -> Req:
    """``variant`` of a request for ``spelled``; ``tags`` are the target's ETags, if any."""
    fields = variant.fields.format(
        etag=tags[0] if tags else '"no-etag-known"',
        etags=", ".join(tags) if tags else '"no-etag-known"',
    )
    data = get(spelled + variant.query, "test", fields, variant.method, variant.version)
    label = f"{variant.method} {spelled}{variant.query} ({variant.label})"
    return Req(label, data, variant.method == "HEAD", variant.closes)


WARM_UP = [
    Variant("warm-up for the identity ETag"),
    Variant("warm-up for the br ETag", fields="Accept-Encoding: br\r\n"),
    Variant("warm-up for the gzip ETag", fields="Accept-Encoding: gzip\r\n"),
]


def etags_from(warm_up: list[Response]) -> dict[str, list[str]]:
    """Target -> the distinct ETags its warm-up responses carried, identity first."""
    etags: dict[str, list[str]] = {}
    for n, target in enumerate(TARGETS):
        answers = warm_up[n * len(WARM_UP) : (n + 1) * len(WARM_UP)]
        etags[target] = list(dict.fromkeys(v for r in answers for k, v in r.fields if k == "etag"))
    return etags


def ordered(requests: list[Req], order: str) -> list[Req]:
    if order == "forward":
        return list(requests)
    if order == "reversed":
        return requests[::-1]
    shuffled = list(requests)
    random.Random(SHUFFLE_SEED).shuffle(shuffled)
    return shuffled


# (order, how the requests go out), one pass after the other: the cache carries over.
PASSES: list[tuple[str, Callable[[int, list[Req]], list[Response]]]] = [
    ("forward", pipelined),
    ("reversed", pipelined),
    ("shuffled", pipelined),
    ("forward", one_per_connection),
    ("shuffled", one_per_connection),
]


def run_corpus(port: int, root_path: bool) -> tuple[list[Req], list[Response]]:
    """A warm-up that finds the ETags, then every pass: all requests, all responses."""
    requests = [
        replace(req, label=f"warm-up: {req.label}")
        for target in TARGETS
        for req in (request(variant, target, []) for variant in WARM_UP)
    ]
    responses = pipelined(port, requests)
    etags = etags_from(responses)
    corpus = [
        request(variant, spelled, etags[target])
        for target in TARGETS
        for spelled in spellings(target, root_path)
        for variant in VARIANTS
    ]
    for order, send in PASSES:
        name = f"{order}, {send.__name__.replace('_', ' ')}"
        batch = [
            replace(req, label=f"{name} #{n}: {req.label}")
            for n, req in enumerate(ordered(corpus, order))
        ]
        requests += batch
        responses += send(port, batch)
    return requests, responses


# --- comparing -------------------------------------------------------------------------------

_BOUNDARY = re.compile(r"boundary=([^;\s]+)")


def normalised(resp: Response) -> Response:
    """Without Date, and with a multipart/byteranges boundary replaced by BOUNDARY."""
    fields = [(k, v) for k, v in resp.fields if k != "date"]
    body = resp.body
    ctype = next((v for k, v in fields if k == "content-type"), "")
    found = _BOUNDARY.search(ctype)
    if ctype.lower().startswith("multipart/byteranges") and found:
        boundary = found.group(1)
        fields = [
            (k, v.replace(boundary, "BOUNDARY") if k == "content-type" else v) for k, v in fields
        ]
        body = body.replace(boundary.encode("latin-1"), b"BOUNDARY")
    return Response(resp.status_line, tuple(fields), body)


def rendered(resp: Response) -> list[str]:
    lines = [resp.status_line, *(f"{k}: {v}" for k, v in resp.fields)]
    body = resp.body
    if len(body) <= 200:
        lines.append(f"body ({len(body)} bytes): {body!r}")
    else:
        digest = hashlib.sha256(body).hexdigest()[:16]
        lines.append(f"body ({len(body)} bytes, sha-256 {digest}...): {body[:100]!r}...")
    return lines


def indented(lines: list[str]) -> str:
    return "\n".join("    " + line for line in lines)


def lines_of(req: Req) -> list[str]:
    return req.data.decode("latin-1").rstrip("\r\n").split("\r\n")


def mismatch_report(req: Req, other: Req, cached: Response, uncached: Response) -> str:
    out = [req.label, "request:", indented(lines_of(req))]
    if other.data != req.data:
        out += ["request to the --no-cache server (its ETags differ):", indented(lines_of(other))]
    a, b = rendered(cached), rendered(uncached)
    diff = [
        line
        for line in difflib.unified_diff(a, b, lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]
    out += [
        "cache on:",
        indented(a),
        "--no-cache:",
        indented(b),
        "difference (- cache on, + --no-cache):",
        indented(diff),
    ]
    return "\n".join(out)


@pytest.mark.parametrize("args", CASES)
def test_the_cache_never_changes_a_response(
    diff_root: Path, tmp_path: Path, args: list[str]
) -> None:
    servers = [
        ServerProcess(diff_root, ["--access-log", "off", *args], logdir=tmp_path / "cache-on"),
        ServerProcess(
            diff_root, ["--access-log", "off", *args, "--no-cache"], logdir=tmp_path / "no-cache"
        ),
    ]
    root_path = "--root-path" in args
    with ExitStack() as stack, ThreadPoolExecutor(len(servers)) as pool:
        for server in servers:
            stack.callback(server.stop)
        list(pool.map(ServerProcess.start, servers))
        # Both servers at once: each gets its requests in order, only the clocks overlap.
        (reqs, cached), (other_reqs, uncached) = pool.map(
            lambda server: run_corpus(server.port, root_path), servers
        )
    for server in servers:
        assert server.loop_errors() == [], server.stderr()[-3000:]
    assert len(reqs) == len(other_reqs) == len(cached) == len(uncached)
    # Not vacuous: one server did answer from its cache (its debug log says so), the other
    # never did.
    hits = [server.stderr().count(" body bytes via cache") for server in servers]
    assert hits[0] > 0 and hits[1] == 0, f"cache hits (cache on, --no-cache): {hits}"

    mismatches = [n for n in range(len(reqs)) if normalised(cached[n]) != normalised(uncached[n])]
    if mismatches:
        shown = mismatches[:SHOWN_MISMATCHES]
        report = [
            f"with options {' '.join(args) or '(none)'}, the server with its cache answered "
            f"{len(mismatches)} of {len(reqs)} requests differently from --no-cache "
            "(Date dropped, multipart boundaries replaced by BOUNDARY)",
        ]
        for n in shown:
            report += [
                "",
                mismatch_report(
                    reqs[n], other_reqs[n], normalised(cached[n]), normalised(uncached[n])
                ),
            ]
        if len(mismatches) > len(shown):
            report += ["", f"and {len(mismatches) - len(shown)} more:"]
            report += [f"    {reqs[n].label}" for n in mismatches[len(shown) :][:40]]
            if len(mismatches) > len(shown) + 40:
                report.append("    ...")
        pytest.fail("\n".join(report), pytrace=False)
    unanswered = [reqs[n].label for n in range(len(reqs)) if cached[n] is CLOSED]
    assert unanswered == [], "requests the server closed on, with and without its cache"
