"""loadtest.copypaths: every copy method moves exactly the right bytes, with plausible syscall
counts, to real files and a real loopback socket; and the command line, end to end.

No timing assertions: the figures are the tool's output, not its correctness.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import copypaths as cp

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
SIZES = [8 * MIB, 8 * MIB + 12345]  # a multiple of every buffer, and not one
SOCKET_METHODS = [m for m, spec in cp.METHODS.items() if not spec.file_only]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("copypaths")
    out = {}
    for size in SIZES:
        path = base / f"src-{size}.bin"
        assert cp.make_source(path, size)
        assert not cp.make_source(path, size)  # the right size already: kept
        out[size] = path
    return out


@pytest.fixture(scope="module")
def peer():
    with cp.Peer() as p:
        yield p


def pipe_capacity() -> int:
    r, w, capacity = cp.make_pipe()
    os.close(r)
    os.close(w)
    return capacity


def expected_file_calls(method: str, size: int) -> int:
    """The exact syscall count for a file destination (full writes, below 0x7ffff000)."""
    spec = cp.METHODS[method]
    if spec.buffer:
        return 2 * math.ceil(size / spec.buffer)  # a read and a write per buffer
    if method == "mmap-write":
        return math.ceil(size / cp.MMAP_CHUNK) + 2  # writes + mmap + munmap
    if method == "splice":
        return 2 * math.ceil(size / pipe_capacity())  # into the pipe, out of it
    return 1  # sendfile, copy_file_range: one call moves it all


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", list(cp.METHODS))
def test_file_to_file_moves_exact_content(method, size, sources, tmp_path):
    src_path, dst_path = sources[size], tmp_path / "dest.bin"
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        copied = cp.copy(method, src, dst, size)
    finally:
        os.close(src)
        os.close(dst)
    assert copied.moved == size
    assert dst_path.read_bytes() == src_path.read_bytes()
    assert copied.calls == expected_file_calls(method, size)
    cp.check_file(src_path, dst_path, copied.moved, full=True)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", SOCKET_METHODS)
def test_file_to_socket_moves_every_byte(method, size, sources, peer):
    src = os.open(sources[size], os.O_RDONLY)
    try:
        with socket.create_connection(peer.address) as sock:
            copied = cp.copy(method, src, sock.fileno(), size)
            sock.shutdown(socket.SHUT_WR)
    finally:
        os.close(src)
    assert copied.moved == size
    assert peer.received() == size
    # A blocking socket may take a write partly, so counts are lower bounds here.
    assert copied.calls >= expected_file_calls(method, size)
    if method.startswith("sendfile"):
        assert copied.calls <= 2


def test_syscall_counts_order_the_methods(sources, tmp_path):
    """rw-4k makes ~2 calls per 4 KiB; bigger buffers fewer; sendfile far fewer than any."""
    size = SIZES[1]
    calls = {}
    for method in cp.METHODS:
        src = os.open(sources[size], os.O_RDONLY)
        dst = os.open(tmp_path / method, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            calls[method] = cp.copy(method, src, dst, size).calls
        finally:
            os.close(src)
            os.close(dst)
    assert calls["rw-4k"] == 2 * math.ceil(size / 4096)
    assert calls["rw-4k"] > calls["rw-64k"] > calls["rw-1m"] > calls["sendfile-loop"]
    assert calls["sendfile-loop"] == calls["sendfile-once"] == calls["copy_file_range"] == 1


@pytest.mark.parametrize("size", SIZES)
def test_single_sendfile_moves_min_of_size_and_the_cap(size, sources, tmp_path):
    assert cp.MAX_RW_COUNT == 0x7FFFF000 == 2_147_479_552
    assert cp.expected_bytes("sendfile-once", size) == size
    assert cp.expected_bytes("sendfile-once", 10 * 2**30) == 0x7FFFF000
    assert cp.expected_bytes("sendfile-loop", 10 * 2**30) == 10 * 2**30
    dest = tmp_path / "once.bin"
    src = os.open(sources[size], os.O_RDONLY)
    dst = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        copied = cp.copy("sendfile-once", src, dst, size)
    finally:
        os.close(src)
        os.close(dst)
    assert copied.moved == min(size, 0x7FFFF000)
    assert copied.calls == 1


@pytest.mark.parametrize("target", ["file", "socket"])
def test_measure_in_a_forked_child_verifies_and_cleans_up(target, sources, peer, tmp_path):
    size = SIZES[1]
    sample = cp.measure("rw-64k", target, sources[size], size, tmp_path, peer)
    assert (sample.method, sample.target, sample.moved) == ("rw-64k", target, size)
    assert sample.calls == 2 * math.ceil(size / (64 * 1024)) or target == "socket"
    assert sample.user_s >= 0 and sample.sys_s >= 0 and sample.wall_s > 0
    assert sample.nvcsw >= 0 and sample.nivcsw >= 0
    if target == "socket":
        assert sample.received == size
    assert list(tmp_path.iterdir()) == []  # the destination file is removed


def test_check_file_catches_a_wrong_byte(sources, tmp_path):
    size = SIZES[0]
    data = bytearray(sources[size].read_bytes())
    dest = tmp_path / "bad.bin"
    dest.write_bytes(data)
    cp.check_file(sources[size], dest, size, full=True)
    offset = cp.sample_offsets(size)[3]
    data[offset] ^= 0xFF
    dest.write_bytes(data)
    with pytest.raises(RuntimeError, match="differs"):
        cp.check_file(sources[size], dest, size)
    with pytest.raises(RuntimeError, match="bytes on disk"):
        cp.check_file(sources[size], dest, size - 1)


def test_source_pages_carry_their_offsets(sources):
    data = sources[SIZES[1]].read_bytes()
    for off in (0, 4096, 5 * MIB, 8 * MIB + 8192):
        assert int.from_bytes(data[off : off + 8], "little") == off
    assert data.count(0) < len(data) // 100  # not a zero-filled file


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("256m", 256 * MIB),
        ("1g", 2**30),
        ("10G", 10 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("64kb", 65536),
    ],
)
def test_parse_size(text, size):
    assert cp.parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "12q", "g", "-1m", "0", "1 g b", "1e9"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="invalid size"):
        cp.parse_size(bad)


def test_space_needed(tmp_path):
    src = tmp_path / "src.bin"
    assert cp.space_needed(src, 100, ["file", "socket"]) == 200
    assert cp.space_needed(src, 100, ["socket"]) == 100
    src.write_bytes(b"x" * 100)
    assert cp.space_needed(src, 100, ["file"]) == 100


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.copypaths", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_every_method(tmp_path):
    out = tmp_path / "raw.json"
    r = run_cli("--size", "8m", "--rounds", "1", "--dir", str(tmp_path), "--json", str(out))
    assert r.returncode == 0, r.stderr
    for method in cp.METHODS:
        assert f"| {method} |" in r.stdout
    assert "### file → file" in r.stdout and "### file → socket" in r.stdout
    assert "0x7ffff000 = 2,147,479,552" in r.stdout
    assert "n/a (file only)" in r.stdout  # copy_file_range to a socket
    raw = json.loads(out.read_text())
    assert len(raw["samples"]) == 2 * len(cp.METHODS) - 1
    assert all(s["moved"] == 8 * MIB for s in raw["samples"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copypaths-src-8388608.bin", "raw.json"]


def test_cli_bad_size_exits_2_with_a_clear_message():
    r = run_cli("--size", "12q")
    assert r.returncode == 2
    assert "invalid size '12q'" in r.stderr and "e.g. 256m, 1g, 10g" in r.stderr
    assert r.stdout == ""


def test_cli_unknown_method_exits_2():
    r = run_cli("--methods", "rw-4k,teleport")
    assert r.returncode == 2
    assert "unknown method teleport" in r.stderr
