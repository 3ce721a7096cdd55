"""nginx as a real process for tests: a config made for a free loopback port, started in
the foreground (``daemon off``), ready once it accepts, stopped by its PID. Used by the
reverse-proxy tests and the differential fuzzing against nginx."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_version() -> tuple[int, ...]:
    assert NGINX is not None
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in m.groups()) if m else (0, 0, 0)


class Nginx:
    """``nginx -c CONF -p PREFIX`` in the foreground (``daemon off``), stopped by its PID."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, make_config: Callable[[int], str]) -> Nginx:
        """Start with ``make_config(port)``, on a free port; wait until it accepts."""
        assert NGINX is not None
        (self.prefix / "temp").mkdir(parents=True, exist_ok=True)
        cmd = [NGINX, "-c", str(self.conf), "-p", f"{self.prefix}/"]
        if nginx_version() >= (1, 19, 5):  # -e: no stray write to the compiled-in error log
            cmd += ["-e", str(self.prefix / "error.log")]
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self.conf.write_text(make_config(self.port))
            with open(self.prefix / "nginx.stderr", "wb") as err:
                self.proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return self
                time.sleep(0.02)
            self.stop()
            if "Address already in use" not in self.log():
                break
        raise RuntimeError(f"nginx did not start:\n{self.log()}")

    def log(self) -> str:
        parts = [self.prefix / "nginx.stderr", self.prefix / "error.log"]
        return "".join(p.read_text("utf-8", "replace") for p in parts if p.exists())

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
