"""The small-file cache: every hit is revalidated; nothing stale or outside the root."""

from __future__ import annotations

import os
import time

import pytest

from server.files.filecache import CachedFile, FileCache
from server.http.head import serialize
from server.http.plan import FileFacts, whole_file_fields

from .rawhttp import exchange, get
from .serverproc import ServerProcess


def entry_for(path: str, body: bytes) -> CachedFile:
    st = os.stat(path)
    head = serialize(200, whole_file_fields(FileFacts(st.st_size, st.st_mtime_ns, "text/plain")))
    return CachedFile(path, st, head, body)


def test_hit_needs_the_same_file_unchanged(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"one")
    cache = FileCache()
    cache.put(b"/a.txt", entry_for(str(f), b"one"))
    assert cache.get(b"/a.txt") is not None
    os.utime(f, ns=(0, 12345))  # same size, other mtime
    assert cache.get(b"/a.txt") is None
    cache.put(b"/a.txt", entry_for(str(f), b"one"))
    tmp = tmp_path / "b.txt"
    tmp.write_bytes(b"two")
    os.rename(tmp, f)  # another inode under the same name
    assert cache.get(b"/a.txt") is None
    assert cache.get(b"/never-seen") is None


def test_cache_is_bounded_in_entries_and_bytes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"x" * 100)
    cache = FileCache(max_entries=10, max_bytes=100_000)
    for i in range(50):
        cache.put(b"/%d" % i, entry_for(str(f), b"x" * 100))
        assert len(cache) <= 10
    one = entry_for(str(f), b"x" * 100).cost(b"/0")
    big = FileCache(max_entries=100, max_bytes=2 * one + 10)
    for i in range(5):
        big.put(b"/%d" % i, entry_for(str(f), b"x" * 100))
        assert len(big) <= 2 and big.bytes_held <= big.max_bytes


def test_keys_and_heads_count_toward_the_budget(tmp_path):
    """The review grew RSS from 27 to 61 MB with 4,000 HEADs of /a.txt?<i><8 KB>: keys
    and heads were not counted. Long keys now fill the budget like bodies do."""
    f = tmp_path / "a.txt"
    f.write_bytes(b"x")
    cache = FileCache(max_entries=10_000, max_bytes=1_000_000)
    for i in range(4000):
        cache.put(b"/a.txt?%d" % i + b"q" * 8192, entry_for(str(f), b"x"))
        assert cache.bytes_held <= 1_000_000
    assert len(cache) <= 1_000_000 // 8192


def test_the_query_string_does_not_make_entries(srv):
    """Only ?download changes a file's response: any other query shares the path's entry."""
    for i in range(50):
        assert body_of(srv, f"/inside.txt?junk={i}") == (200, b"inside\n")
    assert body_of(srv, "/inside.txt?download") == (200, b"inside\n")
    responses, _ = exchange(srv.port, get("/inside.txt?download&x=1"))
    assert responses[0].header("content-disposition") is not None
    responses, _ = exchange(srv.port, get("/inside.txt?x=1"))
    assert responses[0].header("content-disposition") is None
    assert srv.stderr().count("via cache") >= 49  # the junk queries hit one entry


@pytest.fixture
def srv(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_bytes(b"outside the root\n")
    (root / "inside.txt").write_bytes(b"inside\n")
    with ServerProcess(root, [], logdir=tmp_path / "logs") as server:
        server.root_dir = root  # type: ignore[attr-defined]
        yield server


def body_of(srv, target: str) -> tuple[int, bytes]:
    responses, _ = exchange(srv.port, get(target))
    return responses[0].status, bytes(responses[0].body)


def test_repeated_requests_are_served_from_the_cache(srv):
    for _ in range(3):
        assert body_of(srv, "/inside.txt") == (200, b"inside\n")
    srv.wait_for_log("via cache")


def test_a_changed_file_is_served_fresh(srv):
    path = srv.root_dir / "inside.txt"
    assert body_of(srv, "/inside.txt") == (200, b"inside\n")
    assert body_of(srv, "/inside.txt") == (200, b"inside\n")  # cached now
    path.write_bytes(b"INSIDE\n")  # same size, new content and mtime
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert body_of(srv, "/inside.txt") == (200, b"INSIDE\n")


def test_a_symlink_swapped_to_outside_is_not_followed_from_the_cache(srv):
    link = srv.root_dir / "link.txt"
    os.symlink("inside.txt", link)
    assert body_of(srv, "/link.txt") == (200, b"inside\n")
    assert body_of(srv, "/link.txt") == (200, b"inside\n")  # cached now
    tmp = srv.root_dir / "link.tmp"
    os.symlink(srv.root_dir.parent / "outside.txt", tmp)
    os.rename(tmp, link)  # atomic swap to a target outside the root
    status, body = body_of(srv, "/link.txt")
    assert status == 404 and b"outside" not in body


def test_a_deleted_file_is_404_not_a_cached_ghost(srv):
    path = srv.root_dir / "gone.txt"
    path.write_bytes(b"gone\n")
    assert body_of(srv, "/gone.txt") == (200, b"gone\n")
    assert body_of(srv, "/gone.txt") == (200, b"gone\n")
    path.unlink()
    assert body_of(srv, "/gone.txt")[0] == 404
