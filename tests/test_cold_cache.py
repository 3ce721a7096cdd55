"""A file that is not in the page cache must not freeze the event loop for others.

A real slow disk: an ext4 image on a loop device, with reads through it throttled to
20 MiB/s by the block-I/O cgroup the server runs in. Sending a 48 MiB cold file then
takes seconds; before the cache checks in send.py, sendfile blocked the loop for all of
them (small requests on another connection waited ~5 s). Needs root, a loop device and the
blkio (v1) or io (v2) cgroup controller; skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .pagecache import evict
from .rawhttp import connect, get, read_responses
from .serverproc import SEND_PATHS, ServerProcess

SIZE = 48 * 1024 * 1024
READ_BPS = 20 * 1024 * 1024


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


class ThrottledDisk:
    """An ext4 loop device mounted at ``mount``, and a cgroup throttling reads from it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.image = base / "disk.img"
        self.mount = base / "mnt"
        self.loop = ""
        self.cgroup: Path | None = None

    def setup(self) -> None:
        with open(self.image, "wb") as f:
            f.truncate(SIZE + 64 * 1024 * 1024)
        self.loop = _run("losetup", "-f", "--show", str(self.image))
        _run("mkfs.ext4", "-q", self.loop)
        self.mount.mkdir()
        _run("mount", self.loop, str(self.mount))
        block = os.urandom(1024 * 1024)
        (self.mount / "cold.bin").write_bytes(block * (SIZE // len(block)))
        (self.mount / "small.txt").write_bytes(b"small and warm\n")
        os.sync()
        majmin = Path(f"/sys/block/{Path(self.loop).name}/dev").read_text().strip()
        name = f"zc-cold-{os.getpid()}"
        v1 = Path("/sys/fs/cgroup/blkio")
        v2 = Path("/sys/fs/cgroup")
        if (v1 / "blkio.throttle.read_bps_device").exists():
            self.cgroup = v1 / name
            self.cgroup.mkdir()
            (self.cgroup / "blkio.throttle.read_bps_device").write_text(f"{majmin} {READ_BPS}")
        elif "io" in (v2 / "cgroup.controllers").read_text().split():
            self.cgroup = v2 / name
            self.cgroup.mkdir()
            (self.cgroup / "io.max").write_text(f"{majmin} rbps={READ_BPS}")
        else:
            raise RuntimeError("no block-I/O cgroup controller")

    def prefix(self) -> list[str]:
        """Run a command inside the throttled cgroup."""
        assert self.cgroup is not None
        procs = self.cgroup / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def evict(self, name: str) -> None:
        assert evict(self.mount / name), f"{name} stays in the page cache"

    def teardown(self) -> None:
        if self.mount.is_mount():
            subprocess.run(["umount", str(self.mount)], check=False)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False)
        if self.cgroup is not None and self.cgroup.exists():
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "mount")):
        pytest.skip("needs root, losetup and mkfs.ext4")
    d = ThrottledDisk(tmp_path_factory.mktemp("cold"))
    try:
        d.setup()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        d.teardown()
        pytest.skip(f"cannot make a throttled loop device here: {exc}")
    yield d
    d.teardown()


@pytest.mark.parametrize("path_name", list(SEND_PATHS))
def test_cold_file_does_not_block_the_loop(disk, tmp_path, path_name):
    args, send_path = SEND_PATHS[path_name]
    with ServerProcess(
        disk.mount, [*args, "--access-log", "off"], logdir=tmp_path, prefix=disk.prefix()
    ) as srv:
        disk.evict("cold.bin")
        result: dict[str, object] = {}

        def download() -> None:
            with connect(srv.port, timeout=60) as sock:
                sock.sendall(get("/cold.bin"))
                responses, _ = read_responses(sock, timeout=60, close_wait=0.0)
            result["body"] = bytes(responses[0].body) if responses else b""
            result["done"] = time.monotonic()

        started = time.monotonic()
        thread = threading.Thread(target=download)
        thread.start()
        latencies = []
        with connect(srv.port) as probe:
            probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while thread.is_alive() and time.monotonic() - started < 60:
                t0 = time.monotonic()
                probe.sendall(get("/small.txt"))
                responses, _ = read_responses(probe, close_wait=0.0)
                latencies.append(time.monotonic() - t0)
                assert responses[0].status == 200
                time.sleep(0.01)
        thread.join(60)
        took = result["done"] - started  # type: ignore[operator]
        body = result["body"]
        assert isinstance(body, bytes) and len(body) == SIZE
        expected = hashlib.sha256((disk.mount / "cold.bin").read_bytes()).digest()
        assert hashlib.sha256(body).digest() == expected
        # The disk really was slow (else this test proves nothing)...
        assert took > 1.0, f"cold download took only {took:.2f}s: not throttled?"
        # ...and the loop kept answering: no stall anywhere near the download's length.
        assert len(latencies) > 20
        assert max(latencies) < 0.5, f"max {max(latencies) * 1000:.0f} ms over {took:.1f}s"
        srv.wait_for_log(f"GET /cold.bin -> 200, {SIZE} body bytes via")
        assert srv.send_paths_for("/cold.bin") == [send_path]
