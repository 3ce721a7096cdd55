"""The servers under test: each knows its command line; start one, learn its pid and port, stop it.

Every server runs as ONE process with ONE event loop (nginx: a master and ONE worker; the
worker is the process measured), on 127.0.0.1, optionally pinned to a CPU with taskset.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .system import child_pids, taskset, tree_pids

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
_SERVING = re.compile(r"^Serving .* at http://[^\s/]+:(\d+)/\s*$", re.M)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class StartError(RuntimeError):
    pass


@dataclass
class Running:
    """A started server: its process handle, port, and where its output went."""

    server: Server
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    command: list[str]
    warmed_up: bool = False  # the large-file warm-up download is done

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def pids(self) -> list[int]:
        """Every process of the server (nginx: master and worker)."""
        return tree_pids(self.pid)

    def serving_pid(self) -> int:
        """The process that handles connections (nginx: the worker)."""
        return self.server.serving_pid(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL; also reaps any child left behind (only ours, by pid)."""
        leftovers = {p: _cmdline(p) for p in self.pids() if p != self.pid}
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for pid, cmd in leftovers.items():
            if cmd and _cmdline(pid) == cmd:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Server:
    """A server kind: an id for --servers, a display name, and how to run it."""

    id: str = ""
    name: str = ""
    small_files: bool = True  # takes part in the wrk small-file scenarios
    ranges: bool = True  # takes part in the ranges scenario
    prints_port: bool = True  # started with port 0, prints "Serving ... at http://H:PORT/"
    cwd: Path = REPO  # where the command runs (python -m server imports from here first)

    def missing(self) -> str | None:
        """Why this server cannot run here (None when it can)."""
        return None

    def command(self, root: Path, port: int, run_dir: Path) -> list[str]:
        raise NotImplementedError

    def serving_pid(self, pid: int) -> int:
        return pid

    def start(
        self, root: Path, run_dir: Path, cpu: int | None = None, timeout: float = 15.0
    ) -> Running:
        """Start on 127.0.0.1 and wait (bounded) until it accepts connections."""
        run_dir.mkdir(parents=True, exist_ok=True)
        port = 0 if self.prints_port else free_port()
        log = run_dir / f"{self.id}.log"
        out = run_dir / f"{self.id}.out"
        cmd = [*taskset(cpu), *self.command(root, port, run_dir)]
        with open(out, "wb") as fo, open(log, "wb") as fe:
            proc = subprocess.Popen(
                cmd, cwd=self.cwd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL
            )
        running = Running(self, proc, port, log, cmd)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise StartError(
                        f"{self.id} exited {proc.returncode}: "
                        f"{log.read_text(errors='replace').strip()[-400:]}"
                    )
                if self.prints_port and not running.port:
                    m = _SERVING.search(out.read_text(errors="replace"))
                    if m:
                        running.port = int(m.group(1))
                if running.port and port_open(running.port) and self.ready(running):
                    return running
                if time.monotonic() > deadline:
                    raise StartError(f"{self.id} did not start within {timeout:.0f} s")
                time.sleep(0.05)
        except BaseException:
            running.stop()
            raise

    def ready(self, running: Running) -> bool:
        return True


class ZeroCopy(Server):
    def __init__(self, id: str, name: str, args: list[str], cwd: Path = REPO) -> None:
        self.id, self.name, self.args, self.cwd = id, name, args, cwd

    def at(self, rev: str, source: Path) -> ZeroCopy:
        """The same server run from another revision's ``server/`` package, exported to
        ``source`` (``python -m`` puts the working directory first on sys.path)."""
        return ZeroCopy(f"{self.id}@{rev}", f"{self.name} @ {rev}", self.args, source)

    def missing(self) -> str | None:
        if "uvloop" in self.args and importlib.util.find_spec("uvloop") is None:
            return "uvloop is not installed"
        return None

    def command(self, root: Path, port: int, run_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "server",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(root),
            "--access-log",
            "off",
            "--log-level",
            "warning",
            *self.args,
        ]


NGINX_CONF = """\
# Written by loadtest: one worker, sendfile, everything under the run's temp dir.
{user}worker_processes 1;
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
        location / {{ }}
    }}
}}
"""


class Nginx(Server):
    id = "nginx"
    name = "nginx"
    prints_port = False

    def missing(self) -> str | None:
        return None if shutil.which("nginx") else "nginx is not installed"

    def command(self, root: Path, port: int, run_dir: Path) -> list[str]:
        run = run_dir / "nginx"
        run.mkdir(parents=True, exist_ok=True)
        conf = run / "nginx.conf"
        # As root, nginx would drop its worker to "nobody", which cannot enter a 0700 temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, run=run, port=port, root=root))
        return [
            shutil.which("nginx") or "nginx",
            "-p",
            str(run),
            "-c",
            str(conf),
            "-e",
            str(run / "nginx-error.log"),
        ]

    def serving_pid(self, pid: int) -> int:
        children = child_pids(pid)
        return children[0] if children else pid

    def ready(self, running: Running) -> bool:
        return bool(child_pids(running.pid))


class PeerScript(Server):
    def __init__(self, id: str, name: str, script: str, args: list[str], needs: list[str]):
        self.id, self.name, self.script, self.args, self.needs = id, name, script, args, needs

    def missing(self) -> str | None:
        for module in self.needs:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def command(self, root: Path, port: int, run_dir: Path) -> list[str]:
        return [
            sys.executable,
            str(PEERS / self.script),
            "--dir",
            str(root),
            "--port",
            str(port),
            *self.args,
        ]


class RawSendfile(PeerScript):
    small_files = False
    ranges = False


SERVERS: list[Server] = [
    ZeroCopy("zc-uvloop", "zerocopy uvloop+sendfile", ["--loop", "uvloop"]),
    ZeroCopy("zc-asyncio", "zerocopy asyncio+sendfile", ["--loop", "asyncio"]),
    ZeroCopy("zc-buffered", "zerocopy buffered", ["--loop", "uvloop", "--no-sendfile"]),
    Nginx(),
    PeerScript("aiohttp", "aiohttp web.static (asyncio)", "aiohttp_static.py", [], ["aiohttp"]),
    PeerScript(
        "aiohttp-uvloop",
        "aiohttp web.static (uvloop)",
        "aiohttp_static.py",
        ["--uvloop"],
        ["aiohttp", "uvloop"],
    ),
    RawSendfile("raw-sendfile", "raw os.sendfile", "raw_sendfile.py", [], []),
]


# Selectable by id, not in the default run: the worker comparison (README "Deploying")
# needs the server unpinned (--no-pin), since two workers on one pinned core prove nothing.
EXTRA_SERVERS: list[Server] = [
    ZeroCopy(
        "zc-uvloop-w2",
        "zerocopy uvloop+sendfile, 2 workers",
        ["--loop", "uvloop", "--workers", "2"],
    ),
]


def by_id() -> dict[str, Server]:
    return {s.id: s for s in SERVERS + EXTRA_SERVERS}


def export_revision(rev: str, dest: Path) -> str:
    """``server/`` as it is at git revision ``rev``, extracted under ``dest``; the short
    commit id. Raises ValueError when git cannot resolve or export it."""
    try:
        short = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", short, "server"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"cannot export revision {rev!r}: {exc}") from None
    return short


def with_baseline(chosen: list[Server], rev: str, source: Path) -> list[Server]:
    """Each zerocopy server preceded by its twin from ``rev``: before and after, measured
    in one run, back to back (the machines drift by ±20 % between runs)."""
    out: list[Server] = []
    for server in chosen:
        if isinstance(server, ZeroCopy):
            out.append(server.at(rev, source))
        out.append(server)
    return out


def select(spec: str | None) -> list[Server]:
    """Servers named in a comma-separated list of ids or display names (all when None)."""
    if not spec:
        return list(SERVERS)
    every = SERVERS + EXTRA_SERVERS
    known = {s.id: s for s in every} | {s.name.lower(): s for s in every}
    chosen: list[Server] = []
    for word in (w.strip().lower() for w in spec.split(",")):
        if not word:
            continue
        if word not in known:
            raise ValueError(f"unknown server {word!r}; choose from {', '.join(by_id())}")
        if known[word] not in chosen:
            chosen.append(known[word])
    return chosen
