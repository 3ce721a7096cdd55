"""Shared fixtures: a generated data tree and the real server on each send path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .serverproc import SEND_PATHS, ServerProcess

# Bodies above the server's inline limit (64 KiB) go through the send path under test.
BIG_SIZE = 3 * 1024 * 1024 + 12345
MEDIUM_SIZE = 200 * 1024
# The sparse file's size and where its known bytes lie: beyond 4 GiB, to catch 32-bit offsets.
SPARSE_SIZE = 5 * 1024**3 + 77
SPARSE_MARK_OFFSET = 4 * 1024**3 + 1000
SPARSE_MARK = b"beyond-4GiB:" + bytes(range(256)) * 1024  # 262,156 bytes


def _pattern(size: int, seed: int) -> bytes:
    """Deterministic, non-repeating-looking bytes (so misplaced ranges are caught)."""
    import random

    return random.Random(seed).randbytes(size)


class DataTree:
    """The files every integration test can rely on, with their expected content."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, content: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.files[rel] = content
        return path

    def build(self) -> DataTree:
        self.root.mkdir(parents=True)
        self.outside.mkdir(parents=True)
        self.add("hello.txt", b"hello, world\n")
        self.add("small.bin", _pattern(4096, 1))
        self.add("medium.bin", _pattern(MEDIUM_SIZE, 2))
        self.add("big.bin", _pattern(BIG_SIZE, 3))
        self.add("empty.bin", b"")
        self.add("page.html", b"<!doctype html><title>t</title>\n")
        self.add("data.json", b'{"a": 1}\n')
        self.add("noext", b"no extension\n")
        self.add("space name.txt", b"space\n")
        self.add("\u00fcn\u00efcode.txt", "ünïcode\n".encode())
        self.add("%2e%2e", b"literal percent name\n")
        self.add("dir/index.html", b"<p>index of dir</p>\n")
        self.add("dir/inner.txt", b"inner\n")
        self.add("noindex/file.txt", b"in noindex\n")
        self.add(".env", b"SECRET=1\n")
        self.add(".git/config", b"[core]\n")
        self.add("visible/.hidden", b"hidden\n")
        (self.outside / "secret.txt").write_bytes(b"outside the root\n")
        (self.outside / "sub").mkdir()
        (self.outside / "sub" / "file.txt").write_bytes(b"outside dir file\n")
        os.symlink("hello.txt", self.root / "link-inside.txt")
        os.symlink(self.outside / "secret.txt", self.root / "link-outside.txt")
        os.symlink(self.outside / "sub", self.root / "linkdir-outside")
        os.symlink(self.root / "dir", self.root / "linkdir-inside")
        os.symlink(".env", self.root / "link-to-dotfile")
        os.mkfifo(self.root / "fifo")
        sparse = self.root / "sparse.bin"
        with open(sparse, "wb") as f:
            f.truncate(SPARSE_SIZE)
            f.seek(SPARSE_MARK_OFFSET)
            f.write(SPARSE_MARK)
        return self


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> DataTree:
    return DataTree(tmp_path_factory.mktemp("tree")).build()


@pytest.fixture(scope="module", params=list(SEND_PATHS))
def server(request: pytest.FixtureRequest, tree: DataTree) -> Iterator[ServerProcess]:
    """The server on one send path; ``server.send_path`` is what it reports for big bodies."""
    args, send_path = SEND_PATHS[request.param]
    proc = ServerProcess(tree.root, args, logdir=tree.base / "logs").start()
    proc.send_path = send_path  # type: ignore[attr-defined]
    yield proc
    proc.stop()
    assert proc.loop_errors() == [], proc.stderr()[-3000:]
