"""The data set every server is measured on, generated once and read into the page cache.

    large-<N>m.bin   the large file (1 GiB; 256 MiB in --quick)
    medium-100m.bin  100 MiB, each server's warm-up download before the large-file scenarios
    f4k.bin          4 KiB
    f64k.bin         64 KiB
    many/0000.bin .. many/0999.bin   1,000 distinct 4 KiB files

Files are made only when missing or of the wrong size, so ``--data DIR`` reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
GIB = 2**30
MEDIUM_SIZE = 100 * MIB
SMALL_SIZE = 4 * 1024
MID_SIZE = 64 * 1024
MANY_COUNT = 1000
MANY_DIR = "many"


def make_file(path: Path, size: int, distinct: bool = False) -> bool:
    """Write ``size`` random bytes to ``path`` unless it already has that size.

    Large files repeat one 16 MiB random block (the bytes do not matter to a sendfile);
    ``distinct`` files are random throughout. True when the file was (re)written.
    """
    if path.exists() and path.stat().st_size == size:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(size if distinct else min(size, 16 * MIB))
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    tmp.replace(path)
    return True


def warm(path: Path) -> int:
    """Read a file once so it sits in the page cache; the number of bytes read."""
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 * MIB):
            total += len(chunk)
    return total


def many_name(i: int) -> str:
    return f"{MANY_DIR}/{i:04d}.bin"


@dataclass(frozen=True)
class DataSet:
    root: Path
    large_size: int

    @property
    def large(self) -> str:
        return f"large-{self.large_size // MIB}m.bin"

    @property
    def medium(self) -> str:
        return "medium-100m.bin"

    @property
    def small(self) -> str:
        return "f4k.bin"

    @property
    def mid(self) -> str:
        return "f64k.bin"

    @property
    def many(self) -> list[str]:
        return [many_name(i) for i in range(MANY_COUNT)]

    def files(self) -> dict[str, int]:
        """Every file of the set (relative name) and its size."""
        out = {
            self.large: self.large_size,
            self.medium: MEDIUM_SIZE,
            self.small: SMALL_SIZE,
            self.mid: MID_SIZE,
        }
        out.update(dict.fromkeys(self.many, SMALL_SIZE))
        return out

    def prepare(self) -> int:
        """Generate what is missing and read everything once; the number of files written."""
        written = 0
        for name, size in self.files().items():
            written += make_file(self.root / name, size, distinct=size <= MID_SIZE)
        for name in self.files():
            warm(self.root / name)
        return written
