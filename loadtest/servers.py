"""The servers under test: each knows its command line; start one, learn its pid and port, stop it.

Every server runs as ONE process with ONE event loop (nginx: a master and ONE worker, granian:
a supervisor and ONE worker; the worker is the process measured), on 127.0.0.1, optionally
pinned to a CPU with taskset. A server that serves its files under a prefix (granian:
/static) says so in ``url_prefix``; the harness requests the prefixed paths from it.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
    warmed: set[str] = field(default_factory=set)  # scenarios whose wrk warm-up is done
    idle_baseline_kib: int = 0  # VmRSS before its first idle-10k cell

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.path(path)}"

    def path(self, path: str = "") -> str:
        """The URL path of a data-set file on this server ("/f4k.bin", "/static/f4k.bin")."""
        return f"{self.server.url_prefix}/{path.lstrip('/')}"

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
    large: bool = True  # takes part in the large-file scenarios
    idle: bool = True  # takes part in idle-10k
    prints_port: bool = True  # started with port 0, prints "Serving ... at http://H:PORT/"
    cwd: Path = REPO  # where the command runs (python -m server imports from here first)
    url_prefix: str = ""  # where the data set is in its URL space ("" or "/static")
    note: str = ""  # what the report says about it (e.g. headers it does not send)

    def missing(self) -> str | None:
        """Why this server cannot run here (None when it can)."""
        return None

    def command(self, root: Path, port: int, run_dir: Path, connections: int = 0) -> list[str]:
        """The command line; ``connections`` (when > 0): how many simultaneous connections it
        must accept (idle-10k), beyond its defaults."""
        raise NotImplementedError

    def serving_pid(self, pid: int) -> int:
        return pid

    def start(
        self,
        root: Path,
        run_dir: Path,
        cpu: int | None = None,
        timeout: float = 15.0,
        connections: int = 0,
    ) -> Running:
        """Start on 127.0.0.1 and wait (bounded) until it accepts connections."""
        run_dir.mkdir(parents=True, exist_ok=True)
        port = 0 if self.prints_port else free_port()
        log = run_dir / f"{self.id}.log"
        out = run_dir / f"{self.id}.out"
        cmd = [*taskset(cpu), *self.command(root, port, run_dir, connections)]
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

    def command(self, root: Path, port: int, run_dir: Path, connections: int = 0) -> list[str]:
        # Beyond its default --max-connections (10,000) and --keepalive-timeout (5 s) only
        # when idle-10k runs: N connections held while the RSS is read.
        more = (
            ["--max-connections", str(connections + 100), "--keepalive-timeout", "60"]
            if connections
            else []
        )
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
            *more,
            *self.args,
        ]


NGINX_CONF = """\
# Written by loadtest: one worker, sendfile, everything under the run's temp dir.
{user}worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{
    worker_connections {worker_connections};
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{extra}    default_type application/octet-stream;
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


# nginx-ofc: descriptors, sizes and mtimes cached for 60 s (no open/fstat per request).
OPEN_FILE_CACHE = """\
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
"""


def nginx_conf(
    run: Path, port: int, root: Path, open_file_cache: bool = False, connections: int = 0
) -> str:
    """The nginx.conf of a run: the default one, or with ``open_file_cache`` on."""
    # As root, nginx would drop its worker to "nobody", which cannot enter a 0700 temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    # nginx closes idle keep-alive connections when fewer than 1/16 of worker_connections
    # are free (ngx_drain_connections): a quarter more than idle-10k holds keeps them all.
    worker_connections = max(4096, connections + connections // 4 + 100)
    return NGINX_CONF.format(
        user=user,
        run=run,
        port=port,
        root=root,
        nofile=2 * worker_connections,
        worker_connections=worker_connections,
        extra=OPEN_FILE_CACHE if open_file_cache else "",
    )


class Nginx(Server):
    prints_port = False

    def __init__(
        self, id: str = "nginx", name: str = "nginx", open_file_cache: bool = False
    ) -> None:
        self.id, self.name, self.open_file_cache = id, name, open_file_cache

    def missing(self) -> str | None:
        return None if shutil.which("nginx") else "nginx is not installed"

    def command(self, root: Path, port: int, run_dir: Path, connections: int = 0) -> list[str]:
        run = run_dir / self.id
        run.mkdir(parents=True, exist_ok=True)
        conf = run / "nginx.conf"
        conf.write_text(nginx_conf(run, port, root, self.open_file_cache, connections))
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

    def command(self, root: Path, port: int, run_dir: Path, connections: int = 0) -> list[str]:
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
    idle = False  # one connection at a time


class Floor(PeerScript):
    """loadtest/peers/floor.py: precomputed responses, small-file scenarios (and idle) only."""

    ranges = False
    large = False


class Granian(Server):
    """Granian 2.x's own static-file handler (Rust), 1 worker, 1 runtime thread, under
    /static (it mounts nowhere else); a trivial ASGI app answers the rest with 404."""

    id = "granian"
    name = "granian static (1 worker, st)"
    prints_port = False
    cwd = PEERS
    url_prefix = "/static"
    ranges = False  # it ignores Range: a 200 with the whole body
    note = (
        "granian sends no ETag, no Last-Modified and no Content-Length (its static files go "
        "out chunked), and ignores Range (200, whole body): no ranges cell."
    )

    def missing(self) -> str | None:
        if importlib.util.find_spec("granian") is None:
            return "granian is not installed (pip install granian)"
        return None

    def command(self, root: Path, port: int, run_dir: Path, connections: int = 0) -> list[str]:
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--runtime-blocking-threads",
            "1",
            "--blocking-threads",
            "1",
            "--runtime-mode",
            "st",
            "--backlog",
            "1024",
            "--no-access-log",
            "--log-level",
            "warning",
            "--static-path-route",
            self.url_prefix,
            "--static-path-mount",
            str(root),
            # Its --backpressure (default: backlog/workers = 1,024) caps the connections a
            # worker holds: the next ones wait for a slot (idle ones free theirs when its
            # 30 s header-read timeout closes them). Raised for idle-10k.
            *(["--backpressure", str(connections + 100)] if connections else []),
            "granian_app:app",
        ]

    def serving_pid(self, pid: int) -> int:
        children = child_pids(pid)
        return children[0] if children else pid

    def ready(self, running: Running) -> bool:
        """The worker is up and answers (the supervisor's socket accepts before it does)."""
        if not child_pids(running.pid):
            return False
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=1)
        try:
            conn.request("GET", running.path("f4k.bin"))
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()


SERVERS: list[Server] = [
    ZeroCopy("zc-uvloop", "zerocopy uvloop+sendfile", ["--loop", "uvloop"]),
    ZeroCopy("zc-asyncio", "zerocopy asyncio+sendfile", ["--loop", "asyncio"]),
    ZeroCopy("zc-buffered", "zerocopy buffered", ["--loop", "uvloop", "--no-sendfile"]),
    Nginx(),
    Nginx("nginx-ofc", "nginx open_file_cache", open_file_cache=True),
    PeerScript("aiohttp", "aiohttp web.static (asyncio)", "aiohttp_static.py", [], ["aiohttp"]),
    PeerScript(
        "aiohttp-uvloop",
        "aiohttp web.static (uvloop)",
        "aiohttp_static.py",
        ["--uvloop"],
        ["aiohttp", "uvloop"],
    ),
    Granian(),
    Floor("floor", "floor: uvloop+httptools, precomputed", "floor.py", [], ["uvloop", "httptools"]),
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
