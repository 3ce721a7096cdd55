"""Start the real server as a subprocess on a free loopback port, and read what it logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name -> (command-line options, the send path the server reports for large bodies)
SEND_PATHS: dict[str, tuple[list[str], str]] = {
    "uvloop-sendfile": (["--loop", "uvloop"], "sendfile"),
    "asyncio-sendfile": (["--loop", "asyncio"], "loop.sendfile"),
    "buffered": (["--loop", "uvloop", "--no-sendfile"], "buffered"),
}

_SERVING = re.compile(r"^Serving (.+?)(?: \(.*\))? at http://(\S+):(\d+)/$", re.M)


class ServerProcess:
    """``python -m server`` on 127.0.0.1 with an OS-chosen port; logs go to files."""

    def __init__(
        self,
        root: Path | str,
        args: list[str] | None = None,
        logdir: Path | None = None,
        host: str = "127.0.0.1",
        module: str = "server",
        prefix: list[str] | None = None,
    ) -> None:
        self.prefix = list(prefix or [])  # e.g. prlimit or setpriv in front of python
        self.module = module  # the entry point run with -m (a fault-injecting one in tests)
        self.root = Path(root)
        self.args = list(args or [])
        self.host = host
        self.logdir = Path(logdir) if logdir is not None else Path(self.root).parent
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.stdout_path = self.stderr_path = Path()

    def start(self, timeout: float = 15.0) -> ServerProcess:
        self.logdir.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        self.stdout_path = self.logdir / f"server-{tag}.out"
        self.stderr_path = self.logdir / f"server-{tag}.err"
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            self.module,
            "-b",
            self.host,
            "-p",
            "0",
            "-d",
            str(self.root),
            "--log-level",
            "debug",
            *self.args,
        ]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _SERVING.search(self.stdout())
            if m:
                self.port = int(m.group(3))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"server did not start: {self.stderr()}")

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace") if self.stderr_path.exists() else ""

    def send_paths_for(self, target: str) -> list[str]:
        """The send path of each logged response to ``GET target`` (debug log), in order."""
        pattern = re.compile(
            rf"DEBUG zerocopy\.protocol: GET {re.escape(target)} -> \d+, \d+ body bytes via (\S+)"
        )
        return pattern.findall(self.stderr())

    def wait_for_log(self, text: str, timeout: float = 5.0, stream: str = "stderr") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = self.stderr() if stream == "stderr" else self.stdout()
            if text in content:
                return content
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in server {stream} after {timeout}s")

    def loop_errors(self) -> list[str]:
        """Tracebacks and asyncio-level errors in the log: never expected, whatever the test
        did to the server (client aborts, timeouts, faults are all handled and logged as
        one-liners)."""
        text = self.stderr()
        return [
            line
            for line in text.splitlines()
            if line.startswith("Traceback") or " ERROR asyncio:" in line
        ]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
