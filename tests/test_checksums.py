"""--digest sha-256 beyond the Repr-Digest field: ``NAME.sha256`` and ``SHA256SUMS`` that
``sha256sum -c`` checks, known digests in the JSON listing, and digests kept with the
files (an extended attribute) across restarts, stale ones ignored."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from server.files.digests import XATTR, _check_unchanged

from .rawhttp import exchange, get
from .serverproc import ServerProcess

SHA256SUM = shutil.which("sha256sum")


def fetch(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    r, _ = exchange(port, get(target, method=method), head_requests=[method == "HEAD"])
    return r[0].status, {k.lower(): v for k, v in r[0].headers}, bytes(r[0].body)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (base / "a.txt").write_bytes(b"alpha\n")
    (base / "b c.txt").write_bytes(b"with a space\n")
    (base / ".hidden").write_bytes(b"not listed, not summed\n")
    (base / "sub" / "inner.txt").write_bytes(b"inner\n")
    (base / "real.txt.sha256").write_bytes(b"a real file wins\n")
    return base


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(SHA256SUM is None, reason="sha256sum (coreutils) is needed")
def test_sidecars_and_sums_pass_sha256sum_check(root: Path, tmp_path: Path) -> None:
    download = tmp_path / "download"
    download.mkdir()
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path) as srv:
        status, headers, body = fetch(srv.port, "/big.bin.sha256")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert body == f"{sha(root / 'big.bin')}  big.bin\n".encode()
        (download / "big.bin.sha256").write_bytes(body)
        status, _, sums = fetch(srv.port, "/SHA256SUMS")
        assert status == 200
        (download / "SHA256SUMS").write_bytes(sums)
        for name in ("big.bin", "a.txt", "b c.txt", "real.txt.sha256"):
            (download / name).write_bytes(fetch(srv.port, "/" + name.replace(" ", "%20"))[2])
        # A real file of the sidecar's name is served as it is.
        assert fetch(srv.port, "/real.txt.sha256")[2] == b"a real file wins\n"
        assert fetch(srv.port, "/missing.bin.sha256")[0] == 404
        assert (
            fetch(srv.port, "/sub/SHA256SUMS")[2]
            == f"{sha(root / 'sub/inner.txt')}  inner.txt\n".encode()
        )
        status, headers, body = fetch(srv.port, "/a.txt.sha256", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 64
    names = [line.split("  ", 1)[1] for line in sums.decode().splitlines()]
    assert names == sorted(["a.txt", "b c.txt", "big.bin", "real.txt.sha256"])  # files only
    for listing in ("big.bin.sha256", "SHA256SUMS"):
        done = subprocess.run(
            [SHA256SUM, "-c", listing], cwd=download, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "FAILED" not in done.stdout


def test_without_digest_there_are_no_sidecars(root: Path, tmp_path: Path) -> None:
    with ServerProcess(root, [], logdir=tmp_path) as srv:
        assert fetch(srv.port, "/big.bin.sha256")[0] == 404
        assert fetch(srv.port, "/SHA256SUMS")[0] == 404


def test_too_many_files_to_sum_is_413(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(1001):
        (root / f"f{i:04}").write_bytes(b"")
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path) as srv:
        assert fetch(srv.port, "/SHA256SUMS")[0] == 413


def test_the_json_listing_names_known_digests_and_never_starts_one(
    root: Path, tmp_path: Path
) -> None:
    args = ["--digest", "sha-256", "--autoindex"]
    (root / "sub" / "index.html").unlink(missing_ok=True)
    with ServerProcess(root, args, logdir=tmp_path) as srv:

        def listed() -> dict[str, str | None]:
            status, _, body = fetch(srv.port, "/sub/?format=json")
            assert status == 200
            return {e["name"]: e.get("sha256") for e in json.loads(body)["entries"]}

        assert listed() == {"inner.txt": None}
        assert listed() == {"inner.txt": None}  # listing twice started nothing
        fetch(srv.port, "/sub/inner.txt")  # a small file: hashed as it is read
        assert listed() == {"inner.txt": sha(root / "sub" / "inner.txt")}


def test_digests_survive_a_restart_and_stale_ones_are_ignored(root: Path, tmp_path: Path) -> None:
    big = root / "big.bin"
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path / "one") as srv:
        assert fetch(srv.port, "/big.bin.sha256")[0] == 200  # computed, and kept with it
    kept = os.getxattr(big, XATTR).decode()
    st = big.stat()
    assert kept == f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{sha(big)}"
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path / "two") as srv:
        # A HEAD never starts hashing: a digest on the first one was read from the file.
        status, headers, _ = fetch(srv.port, "/big.bin", method="HEAD")
        assert status == 200 and "repr-digest" in headers
    # The content changes in place (same inode, same size, another mtime): the kept
    # digest is stale, ignored, computed again and rewritten.
    with open(big, "r+b") as f:
        f.write(b"changed!")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path / "three") as srv:
        status, headers, _ = fetch(srv.port, "/big.bin", method="HEAD")
        assert "repr-digest" not in headers  # not the stale one
        assert fetch(srv.port, "/big.bin.sha256")[2] == f"{sha(big)}  big.bin\n".encode()
    st = big.stat()
    assert (
        os.getxattr(big, XATTR).decode() == f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{sha(big)}"
    )


def test_a_file_rewritten_while_hashed_gives_no_digest(tmp_path: Path) -> None:
    """The hashing threads re-check the version after reading: a hash of a file that was
    rewritten meanwhile (new mtime) is of no version, and is neither kept nor answered."""
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        _check_unchanged(fd, st)  # unchanged: fine
        path.write_bytes(b"b" * 100)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        with pytest.raises(OSError, match="changed while it was hashed"):
            _check_unchanged(fd, st)
    finally:
        os.close(fd)


def test_a_made_sidecar_is_kept_until_its_file_changes_or_a_real_one_appears(
    root: Path, tmp_path: Path
) -> None:
    """A warm NAME.sha256 is answered from the file cache, like a small file; it stops
    holding when the file it sums changes, and when a real NAME.sha256 appears."""
    with ServerProcess(root, ["--digest", "sha-256"], logdir=tmp_path) as srv:
        first = fetch(srv.port, "/a.txt.sha256")
        assert first[0] == 200 and first[2] == f"{sha(root / 'a.txt')}  a.txt\n".encode()
        for method in ("GET", "HEAD", "GET", "GET"):
            status, headers, body = fetch(srv.port, "/a.txt.sha256", method=method)
            assert status == 200 and headers == first[1] | {"date": headers["date"]}
            assert body == (first[2] if method == "GET" else b"")
        # Keeping a new digest (an xattr) moves the file's ctime: the entry made with the
        # first answer may be stale at once; the one made with the second holds.
        paths = srv.send_paths_for("/a.txt.sha256")
        assert len(paths) == 4 and paths[0] == "inline" and paths[2:] == ["cache", "cache"]

        (root / "a.txt").write_bytes(b"alpha, rewritten\n")
        body = fetch(srv.port, "/a.txt.sha256")[2]
        assert body == f"{sha(root / 'a.txt')}  a.txt\n".encode()

        (root / "a.txt.sha256").write_bytes(b"now a real one\n")
        assert fetch(srv.port, "/a.txt.sha256")[2] == b"now a real one\n"
        (root / "a.txt.sha256").unlink()
        assert fetch(srv.port, "/a.txt.sha256")[2] == f"{sha(root / 'a.txt')}  a.txt\n".encode()
