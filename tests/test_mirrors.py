"""--mirror: Metalink/HTTP fields (RFC 6249), Metalink 4 documents (RFC 5854), and real
aria2c downloads against two local instances of the server.

Instance B serves a copy of the tree; instance A names B as its mirror. aria2c (a)
downloads A's ``.meta4`` and verifies the result, (b) starts from A's plain URL and uses
its Link and Digest fields, (c) meets a B whose copy has one corrupted piece: the result
must be byte-exact, or aria2c must fail loudly; never a silently corrupt file.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.files.digests import DigestCache, PieceHashes
from server.http.metalink import MIN_PIECE, parse_mirror, piece_length, wants_sha256_digest

from .rawhttp import exchange, get
from .serverproc import ServerProcess

ARIA2C = shutil.which("aria2c")
SIZE = 8 * MIN_PIECE + 12345  # nine pieces, the last one short
NS = "{urn:ietf:params:xml:ns:metalink}"


def fetch(port: int, target: str, extra: str = "", method: str = "GET"):  # type: ignore[no-untyped-def]
    r, _ = exchange(port, get(target, extra=extra, method=method), head_requests=[method == "HEAD"])
    return r[0]


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, bytes]:
    data = os.urandom(SIZE)
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "pool").mkdir(parents=True)
        (root / "pool" / "disk image.iso").write_bytes(data)
    return a, b, data


@pytest.fixture
def pair(
    trees: tuple[Path, Path, bytes], tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a, b, _ = trees
    with ServerProcess(b, [], logdir=tmp_path / "logs-b", host="127.0.0.2") as mirror:
        args = ["--mirror", f"http://127.0.0.2:{mirror.port}/;pri=2"]
        with ServerProcess(a, args, logdir=tmp_path / "logs-a") as main:
            yield main, mirror


TARGET = "/pool/disk%20image.iso"


def test_file_responses_name_their_mirrors_and_metalink(pair) -> None:  # type: ignore[no-untyped-def]
    main, mirror = pair
    r = fetch(main.port, TARGET, method="HEAD")
    links = r.header_all("link")
    assert f"<http://127.0.0.2:{mirror.port}{TARGET}>; rel=duplicate; pri=2" in links
    assert '<disk%20image.iso.meta4>; rel=describedby; type="application/metalink4+xml"' in links
    r = fetch(main.port, TARGET, "Range: bytes=0-9\r\n")
    assert r.status == 206 and r.header_all("link")  # on 206 too


def test_meta4_document_has_hashes_pieces_and_urls(pair, trees) -> None:  # type: ignore[no-untyped-def]
    main, mirror = pair
    _, _, data = trees
    r = fetch(main.port, TARGET + ".meta4")
    assert r.status == 200 and r.header("content-type") == "application/metalink4+xml"
    file = ET.fromstring(bytes(r.body)).find(f"{NS}file")
    assert file is not None and file.get("name") == "disk image.iso"
    assert int(file.findtext(f"{NS}size") or 0) == SIZE
    assert file.findtext(f"{NS}hash") == hashlib.sha256(data).hexdigest()
    pieces = file.find(f"{NS}pieces")
    assert pieces is not None and int(pieces.get("length") or 0) == piece_length(SIZE)
    hashes = [h.text for h in pieces.findall(f"{NS}hash")]
    length = piece_length(SIZE)
    assert len(hashes) == math.ceil(SIZE / length)
    assert hashes == [
        hashlib.sha256(data[i : i + length]).hexdigest() for i in range(0, SIZE, length)
    ]
    urls = {u.text: int(u.get("priority") or 0) for u in file.findall(f"{NS}url")}
    assert urls == {
        f"http://x{TARGET}": 1,  # this server, as the client named it (Host: x)
        f"http://127.0.0.2:{mirror.port}{TARGET}": 2,
    }
    # Now known: Want-Digest gets Digest (RFC 3230), what aria2c verifies with.
    r = fetch(main.port, TARGET, "Want-Digest: SHA-256;q=1, SHA;q=0.1\r\n", method="HEAD")
    assert r.header("digest").startswith("SHA-256=")
    assert fetch(main.port, "/pool/missing.meta4").status == 404


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("SHA-256", True),
        ("sha-256;q=0.5", True),
        ("SHA-256;q=0", False),
        ("MD5", False),
        (None, False),
    ],
)
def test_want_digest(value: str | None, wanted: bool) -> None:
    assert wants_sha256_digest(value) is wanted


@pytest.mark.parametrize(
    "bad", ["ftp://x/", "http://", "http://h/a?b", "http://h/;pri=x", "http://h/ x"]
)
def test_bad_mirrors_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mirror(bad, 2)


def aria2c(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """aria2c with one connection per host and two splits, so the second connection must go
    to the mirror (aria2c tells hosts apart by name, not port: B listens on 127.0.0.2)."""
    assert ARIA2C is not None
    log = cwd / "aria2c.log"
    return subprocess.run(
        [
            ARIA2C,
            "-x1",
            "-s2",
            "-k1M",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--allow-overwrite=true",
            f"--log={log}",
            "--log-level=debug",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_aria2c = pytest.mark.skipif(ARIA2C is None, reason="aria2c is needed (apt-get install aria2)")


@needs_aria2c
def test_aria2c_downloads_the_meta4_and_verifies_it(pair, trees, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main, mirror = pair
    out = tmp_path / "out-a"
    out.mkdir()
    done = aria2c(main.url(TARGET + ".meta4"), cwd=out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "disk image.iso").read_bytes() == trees[2]
    log = (out / "aria2c.log").read_text("utf-8", "replace")
    assert "Good chunk checksum" in log  # every piece checked against the document
    assert "Valid hash found in Digest header field" in log  # and our Digest agrees
    assert mirror.send_paths_for(TARGET), "the mirror named in the document was never used"


@needs_aria2c
def test_aria2c_uses_the_link_and_digest_fields_of_a_plain_url(pair, trees, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main, mirror = pair
    fetch(main.port, TARGET + ".meta4")  # the digest now known, so Digest is sent
    out = tmp_path / "out-b"
    out.mkdir()
    done = aria2c("-o", "plain.iso", main.url(TARGET), cwd=out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "plain.iso").read_bytes() == trees[2]
    log = (out / "aria2c.log").read_text("utf-8", "replace")
    assert f"Adding URI=http://127.0.0.2:{mirror.port}{TARGET}" in log  # from Link
    assert "Verification finished successfully" in log  # against Digest
    assert mirror.send_paths_for(TARGET), "the duplicate was never used"


def corrupt_every_piece(path: Path) -> None:
    """16 zero bytes inside each MiB, size and mtime kept: the mirror's copy looks current."""
    st = path.stat()
    with open(path, "r+b") as f:
        for offset in range(0, st.st_size, MIN_PIECE):
            f.seek(offset + 100)
            f.write(bytes(16))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@needs_aria2c
@pytest.mark.parametrize("start", ["meta4", "plain"])
def test_a_corrupted_mirror_never_leaves_a_corrupt_file(
    start: str, pair, trees, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    main, mirror = pair
    _, b, data = trees
    corrupt_every_piece(b / "pool" / "disk image.iso")
    fetch(main.port, TARGET + ".meta4")  # the digest known to A
    out = tmp_path / f"out-{start}"
    out.mkdir()
    url = main.url(TARGET + ".meta4") if start == "meta4" else main.url(TARGET)
    done = aria2c("-o", "got.iso", url, cwd=out) if start == "plain" else aria2c(url, cwd=out)
    result = out / ("got.iso" if start == "plain" else "disk image.iso")
    assert mirror.send_paths_for(TARGET), "the corrupt mirror was never asked"
    log = (out / "aria2c.log").read_text("utf-8", "replace")
    if done.returncode == 0:
        outcome = "recovered, byte-exact"
        assert result.read_bytes() == data
    else:
        outcome = f"failed loudly (exit {done.returncode})"
        # Never a silently corrupt file: none, or one aria2c keeps marked unfinished.
        assert not result.exists() or result.with_name(result.name + ".aria2").exists()
    if start == "meta4":  # piece hashes: each bad piece found and fetched again
        assert "Chunk checksum validation failed" in log
        assert done.returncode == 0 and result.read_bytes() == data
    else:  # one whole-file Digest: the damage shows only at the end
        assert "Checksum" in log
    with capsys.disabled():
        print(f"\n[mirrors] corrupt mirror, aria2c from the {start} URL: {outcome}")


def test_small_files_from_the_cache_carry_the_links_and_variants_no_digest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"hello mirrors\n" * 100)
    (root / "d" / "a.txt.gz").write_bytes(b"\x1f\x8b not really gzip")
    args = [
        "--mirror",
        "https://m1.example/pub",
        "--mirror",
        "https://m2.example/",
        "--precompressed",
        "gzip",
    ]
    with ServerProcess(root, args, logdir=tmp_path / "logs") as server:
        for _ in range(3):  # the first read fills the file cache; later ones come from it
            r = fetch(server.port, "/d/a.txt")
            assert r.status == 200 and bytes(r.body) == b"hello mirrors\n" * 100
            assert r.header_all("link")[:2] == [
                "<https://m1.example/pub/d/a.txt>; rel=duplicate; pri=2",  # this server is 1
                "<https://m2.example/d/a.txt>; rel=duplicate; pri=3",
            ]
        assert fetch(server.port, "/d/a.txt.meta4").status == 200  # the digest now known
        want = "Want-Digest: sha-256\r\n"
        r = fetch(server.port, "/d/a.txt", want)
        assert (
            r.header("digest")
            == "SHA-256="
            + base64.b64encode(hashlib.sha256(b"hello mirrors\n" * 100).digest()).decode()
        )
        # The gzip variant: the identity file's links, and no Digest (not these bytes).
        r = fetch(server.port, "/d/a.txt", want + "Accept-Encoding: gzip\r\n")
        assert r.header("content-encoding") == "gzip"
        assert "<https://m1.example/pub/d/a.txt>; rel=duplicate; pri=2" in r.header_all("link")
        assert r.header("digest") is None
        # HEAD of the document, and a directory: no document.
        assert fetch(server.port, "/d/a.txt.meta4", method="HEAD").status == 200
        assert fetch(server.port, "/d.meta4").status == 404


async def test_piece_hashes_are_computed_once_per_file_version(tmp_path: Path) -> None:
    """Keeping the digest in an xattr moves the file's ctime, a part of its version: the
    hashes are known under both, so the next document is served at once, not hashed again."""
    path = tmp_path / "f"
    data = os.urandom(2 * MIN_PIECE + 5)
    path.write_bytes(data)
    pieces = PieceHashes(DigestCache())
    fd = os.open(path, os.O_RDONLY)
    try:
        job = pieces.start(fd, os.fstat(fd), MIN_PIECE)
        assert job is not None
        digest, hashes = await job
        assert digest == hashlib.sha256(data).digest()
        assert hashes == [
            hashlib.sha256(data[i : i + MIN_PIECE]).digest() for i in (0, MIN_PIECE, 2 * MIN_PIECE)
        ]
        again = pieces.start(fd, os.fstat(fd), MIN_PIECE)  # the ctime after the xattr
        assert again is not None and again.done() and again.result() == (digest, hashes)
    finally:
        os.close(fd)
