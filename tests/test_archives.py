"""--archives tar,zip: a directory as one resumable, zero-copy download.

Checked with real tools: ``tar -x`` (and Python's tarfile), Python's zipfile
(``testzip()``), the extracted tree compared byte for byte with the served one, over
every send path; the same tree gives the same bytes and ETag; ``curl -C -`` resumes a
cut archive, ``aria2c -x4`` splits one, ``wget -c`` continues one; a 5 GiB sparse member
(pax size, ZIP64) read through ranges; limits answer 413; the listing links archives.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from .rawhttp import exchange, get
from .serverproc import SEND_PATHS, ServerProcess

TAR = shutil.which("tar")
CURL = shutil.which("curl")
WGET = shutil.which("wget")
ARIA2C = shutil.which("aria2c")
# A 300-byte path (a name is at most 255 bytes): over ustar's 100 + 155, a pax record.
LONG_NAME = "d" * 100 + "/" + "e" * 100 + "/" + "f" * 94 + ".txt"
UNICODE_NAME = "\u00fcn\u00efc\u00f6d\u00e9 \u2713.txt"


def build(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "sub" / "deeper" / UNICODE_NAME).write_bytes("ünï\n".encode())
    (root / "sub" / LONG_NAME).parent.mkdir(parents=True)
    (root / "sub" / LONG_NAME).write_bytes(b"a long name\n")
    (root / ".hidden").write_bytes(b"dotfiles stay out\n")
    (root / "sub" / ".git").mkdir()
    (root / "sub" / ".git" / "config").write_bytes(b"[core]\n")
    (root / "emptydir").mkdir()
    os.chmod(root / "a.txt", 0o640)


def visible_tree(root: Path) -> dict[str, bytes | None]:
    """What an archive of ``root`` must hold: files (content) and directories (None)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        out[rel + ("/" if path.is_dir() else "")] = None if path.is_dir() else path.read_bytes()
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("archives") / "share"
    base.mkdir()
    build(base)
    return base


def fetch(port: int, target: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    r, _ = exchange(port, get(target, extra=extra), timeout=60)
    return r[0].status, {k.lower(): v for k, v in r[0].headers}, bytes(r[0].body)


def tar_members(data: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            assert m.uid == m.gid == 0
            f = tf.extractfile(m)
            out[m.name + ("/" if m.isdir() else "")] = f.read() if f else None
    return out


def zip_members(data: bytes) -> dict[str, bytes | None]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every CRC-32 checks
        return {i.filename: None if i.is_dir() else zf.read(i) for i in zf.infolist()}


@pytest.mark.parametrize("path", list(SEND_PATHS))
def test_tar_and_zip_hold_the_tree_byte_for_byte_on_every_send_path(
    root: Path, tmp_path: Path, path: str
) -> None:
    args, send_path = SEND_PATHS[path]
    with ServerProcess(root, [*args, "--archives", "tar,zip"], logdir=tmp_path) as srv:
        status, headers, tar_bytes = fetch(srv.port, "/?archive=tar")
        assert status == 200 and headers["content-type"] == "application/x-tar"
        assert int(headers["content-length"]) == len(tar_bytes)
        assert 'filename="share.tar"' in headers["content-disposition"]
        status, headers, zip_bytes = fetch(srv.port, "/?archive=zip")
        assert status == 200 and headers["content-type"] == "application/zip"
        srv.wait_for_log("GET /?archive=zip -> 200")
        assert srv.send_paths_for("/?archive=tar") == [send_path]  # members sent zero-copy
    expected = visible_tree(root)
    assert tar_members(tar_bytes) == expected
    assert zip_members(zip_bytes) == expected


@pytest.mark.skipif(TAR is None, reason="tar is needed")
def test_gnu_tar_extracts_it_with_modes_and_mtimes(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--archives", "tar"], logdir=tmp_path / "l") as srv:
        status, _, data = fetch(srv.port, "/sub/?archive=tar")
    assert status == 200
    (tmp_path / "sub.tar").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [TAR, "-xf", str(tmp_path / "sub.tar"), "-C", str(out)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for rel, content in visible_tree(root / "sub").items():
        if content is not None:
            assert (out / rel).read_bytes() == content
            st, orig = (out / rel).stat(), (root / "sub" / rel).stat()
            assert int(st.st_mtime) == int(orig.st_mtime)
            assert st.st_mode & 0o777 == orig.st_mode & 0o777


def test_the_same_tree_gives_the_same_bytes_and_etag(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--archives", "tar,zip"], logdir=tmp_path) as srv:
        first = [fetch(srv.port, f"/?archive={k}") for k in ("tar", "zip")]
        again = [fetch(srv.port, f"/?archive={k}") for k in ("tar", "zip")]
        for (_, h1, b1), (_, h2, b2) in zip(first, again, strict=True):
            assert b1 == b2 and h1["etag"] == h2["etag"]
        etag = first[0][1]["etag"]
        status, _, _ = fetch(srv.port, "/?archive=tar", f"If-None-Match: {etag}\r\n")
        assert status == 304
        status, headers, part = fetch(srv.port, "/?archive=tar", "Range: bytes=1000-1999\r\n")
        assert status == 206 and part == first[0][2][1000:2000]
        assert headers["content-range"] == f"bytes 1000-1999/{len(first[0][2])}"
        status, headers, _ = fetch(srv.port, "/?archive=zip", "Range: bytes=0-9,-10\r\n")
        assert status == 206 and "multipart/byteranges" in headers["content-type"]


@pytest.mark.skipif(CURL is None, reason="curl is needed")
def test_curl_resumes_a_cut_archive(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--archives", "zip"], logdir=tmp_path / "l") as srv:
        url = srv.url("/?archive=zip")
        _, _, whole = fetch(srv.port, "/?archive=zip")
        cut = 1_234_567  # a cut at an odd offset: in the middle of big.bin's data
        out = tmp_path / "share.zip"
        out.write_bytes(whole[:cut])
        done = subprocess.run(
            [CURL, "-sS", "-C", "-", "-o", str(out), url], capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert out.read_bytes() == whole
    assert zip_members(whole) == visible_tree(root)


@pytest.mark.skipif(ARIA2C is None or WGET is None, reason="aria2c and wget are needed")
def test_aria2c_splits_and_wget_continues_an_archive(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--archives", "tar"], logdir=tmp_path / "l") as srv:
        url = srv.url("/?archive=tar")
        _, _, whole = fetch(srv.port, "/?archive=tar")
        done = subprocess.run(
            [
                ARIA2C,
                "-q",
                "-x4",
                "-s4",
                "-k1M",
                "--allow-overwrite=true",
                "-d",
                str(tmp_path),
                "-o",
                "aria.tar",
                url,
            ],
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / "aria.tar").read_bytes() == whole
        partial = tmp_path / "wget.tar"
        partial.write_bytes(whole[:777_777])
        done = subprocess.run(
            [WGET, "-q", "-c", "-O", str(partial), url], capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert partial.read_bytes() == whole


def sparse_tree(path: Path, size: int) -> Path:
    path.mkdir()
    with open(path / "huge.bin", "wb") as f:
        f.truncate(size)
        f.seek(size - 6)
        f.write(b"TAILX\n")
    return path


def test_a_9_gib_sparse_member_has_a_pax_size_record(tmp_path: Path) -> None:
    """ustar's size field stops at 8 GiB - 1: beyond it, a pax "size" record."""
    size = 9 * 1024**3 + 77
    root = sparse_tree(tmp_path / "sparse", size)
    with ServerProcess(root, ["--archives", "tar"], logdir=tmp_path / "l") as srv:
        status, headers, head = fetch(srv.port, "/?archive=tar", "Range: bytes=0-2047\r\n")
        assert status == 206
        total = int(headers["content-range"].rsplit("/", 1)[1])
        assert f" size={size}\n".encode() in head
        with tarfile.open(fileobj=io.BytesIO(head + bytes(512))) as tf:
            assert tf.next().size == size  # type: ignore[union-attr]
        end = total - 1024 - (-size % 512)  # the data ends before its padding and 2 blocks
        status, _, tail = fetch(srv.port, "/?archive=tar", f"Range: bytes={end - 6}-{end - 1}\r\n")
        assert tail == b"TAILX\n"


def test_a_5_gib_sparse_member_is_zip64(tmp_path: Path) -> None:
    size = 5 * 1024**3 + 77
    root = sparse_tree(tmp_path / "sparse", size)
    with ServerProcess(root, ["--archives", "zip"], logdir=tmp_path / "l") as srv:
        status, headers, _ = fetch(srv.port, "/?archive=zip", "Range: bytes=0-0\r\n")
        assert status == 206
        zsize = int(headers["content-range"].rsplit("/", 1)[1])
        with zipfile.ZipFile(RangedFile(srv.port, "/?archive=zip", zsize)) as zf:
            (info,) = zf.infolist()
            assert info.file_size == info.compress_size == size
            assert zlib.crc32(b"TAILX\n", crc32_of_zeros(size - 6)) == info.CRC


def crc32_of_zeros(n: int) -> int:
    chunk = bytes(1 << 22)
    crc = 0
    while n:
        k = min(n, len(chunk))
        crc = zlib.crc32(chunk[:k] if k < len(chunk) else chunk, crc)
        n -= k
    return crc


class RangedFile(io.RawIOBase):
    """A read-only file over HTTP ranges: enough for zipfile to read a central directory."""

    def __init__(self, port: int, target: str, size: int) -> None:
        self.port, self.target, self.size, self.pos = port, target, size, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos, 1 << 20)
        if n <= 0:
            return b""
        status, _, data = fetch(
            self.port, self.target, f"Range: bytes={self.pos}-{self.pos + n - 1}\r\n"
        )
        assert status == 206
        self.pos += len(data)
        return data


def test_limits_answer_413_with_a_message(root: Path, tmp_path: Path) -> None:
    args = ["--archives", "tar", "--archive-max-files", "2"]
    with ServerProcess(root, args, logdir=tmp_path / "l") as srv:
        status, _, body = fetch(srv.port, "/?archive=tar")
        assert status == 413 and b"more than 2 files" in body
    args = ["--archives", "tar", "--archive-max-bytes", "1m"]
    with ServerProcess(root, args, logdir=tmp_path / "l2") as srv:
        status, _, body = fetch(srv.port, "/?archive=tar")
        assert status == 413 and b"bytes" in body


def test_a_member_that_changes_during_the_send_aborts_it(tmp_path: Path) -> None:
    root = tmp_path / "changing"
    root.mkdir()
    (root / "a.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    (root / "b.bin").write_bytes(os.urandom(1024))
    with ServerProcess(root, ["--archives", "tar"], logdir=tmp_path / "l") as srv:
        _, headers, _ = fetch(srv.port, "/?archive=tar", "Range: bytes=0-0\r\n")
        total = int(headers["content-range"].rsplit("/", 1)[1])
        import socket

        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(get("/?archive=tar"))
            data = s.recv(65536)
            (root / "b.bin").write_bytes(os.urandom(2048))  # b.bin, not yet sent, changes
            while chunk := s.recv(1 << 20):
                data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        assert len(body) < total  # cut: the promised bytes can no longer be kept
        srv.wait_for_log("changed since the archive was planned")


def test_listing_links_the_archives(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--autoindex", "--archives", "tar,zip"], logdir=tmp_path) as srv:
        _, _, page = fetch(srv.port, "/sub/")
        assert b'href="./?archive=tar"' in page and b'href="./?archive=zip"' in page
        _, _, doc = fetch(srv.port, "/sub/?format=json")
        assert json.loads(doc)["archives"] == {
            "tar": "/sub/?archive=tar",
            "zip": "/sub/?archive=zip",
        }
    with ServerProcess(root, ["--autoindex"], logdir=tmp_path / "off") as srv:
        _, _, page = fetch(srv.port, "/sub/")
        assert b"archive=" not in page
        status, headers, _ = fetch(srv.port, "/sub/?archive=tar")
        assert status == 200 and headers["content-type"].startswith("text/html")  # off: a listing


def test_a_second_zip_of_a_tree_finds_its_crcs_kept(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, ["--archives", "zip"], logdir=tmp_path / "one") as srv:
        _, _, first = fetch(srv.port, "/?archive=zip")
    big = root / "sub" / "big.bin"
    assert os.getxattr(big, "user.zerocopy.crc32")  # kept with the file
    with ServerProcess(root, ["--archives", "zip"], logdir=tmp_path / "two") as srv:
        _, _, second = fetch(srv.port, "/?archive=zip")
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
