"""Real nginx in front of the server, configured from the shipped deploy/nginx.conf.

The config nginx runs here is deploy/nginx.conf with only what a test must change
rewritten (listen port, upstream addresses, file paths, ``daemon off``, ``user``); every
rewrite must match the expected number of times, and every other line stays as shipped,
so the file users copy is the file under test. Through it, over both upstreams (TCP, and
a unix socket mounted at /files/ with the prefix stripped): a 1 GiB sparse download
byte-exact, single and multipart ranges, ``curl -C -`` resume, X-Forwarded-For trust, and
``--root-path`` redirects with the prefix stripped and passed on.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import nginxproc
from .serverproc import REPO, ServerProcess

NGINX = nginxproc.NGINX
CURL = shutil.which("curl")
if NGINX is None or CURL is None:
    pytest.skip("nginx and curl are needed (apt-get install nginx curl)", allow_module_level=True)

DEPLOY_CONF = REPO / "deploy" / "nginx.conf"

# A 1 GiB-class sparse file (not page-aligned, to catch an off-by-one at the end) with
# random marks at several offsets, one of them its last bytes.
BIG_SIZE = 1024**3 + 123
MARK_LEN = 4096
MARK_OFFSETS = (0, 3 * 4096 + 5, 256 * 1024**2 - 10, 512 * 1024**2 + 7, BIG_SIZE - MARK_LEN)
MEDIUM_SIZE = 8 * 1024**2 + 17
DIR_INDEX = b"<p>index of dir</p>\n"
ROOT_INDEX = b"<p>root index</p>\n"
HELLO = b"hello through nginx\n"

SPOOFED = "203.0.113.7"  # what a client claims in X-Forwarded-For
CLIENT = "127.0.0.2"  # the client's real address (loopback, but not a trusted proxy)

# upstream name -> the URL prefix nginx routes to it (deploy/nginx.conf's locations)
MOUNTS = {"tcp": "", "unix": "/files"}


# --- deriving the test config from deploy/nginx.conf ---------------------------------------


def derive_config(
    shipped: str, *, prefix: Path, port: int, tcp_port: int, unix_socket: Path, pass_prefix: bool
) -> str:
    """deploy/nginx.conf made runnable in a test: each rewrite must match as often as
    expected, so a change to the shipped file that the test no longer covers fails here."""

    def sub(pattern: str, repl: str, text: str, count: int) -> str:
        new, n = re.subn(pattern, lambda _m: repl, text, flags=re.M)
        assert n == count, f"deploy/nginx.conf: {pattern!r} matched {n} times, expected {count}"
        return new

    text = shipped
    # In the foreground, so that the test owns the master process and stops it by PID.
    text = "daemon off;\n" + text
    # Workers must reach the test's unix socket and temp dirs, which belong to the test's
    # user (pytest's temp dirs are 0700): as root run them as root; otherwise nginx cannot
    # switch users anyway, and the directive would only draw a warning.
    user = "user root;" if os.geteuid() == 0 else "# user: not root, workers keep our uid"
    text = sub(r"^user www-data;", user, text, 1)
    text = sub(r"^pid /run/nginx\.pid;", f"pid {prefix}/nginx.pid;", text, 1)
    text = sub(
        r"^error_log /var/log/nginx/error\.log warn;",
        f"error_log {prefix}/error.log info;",
        text,
        1,
    )
    text = sub(
        r"(?<=access_log )/var/log/nginx/zerocopy\.access\.log", f"{prefix}/access.log", text, 1
    )
    text = sub(r"/var/lib/nginx/", f"{prefix}/temp/", text, 5)
    text = sub(r"(?<=\blisten )80;", f"127.0.0.1:{port};", text, 1)
    text = sub(r"(?<=server )127\.0\.0\.1:8000;", f"127.0.0.1:{tcp_port};", text, 1)
    text = sub(r"(?<=server )unix:/run/zerocopy-server\.sock;", f"unix:{unix_socket};", text, 1)
    if pass_prefix:
        # The documented alternative: take the commented-out location (prefix passed on)
        # from the file and put it in place of the active one (prefix stripped).
        m = re.search(r"^(\s*)# location /files/ \{\n\1#(\s+proxy_pass [^\n]+)\n\1# \}", text, re.M)
        assert m, "deploy/nginx.conf no longer documents the pass-the-prefix location"
        assert m.group(2).strip() == "proxy_pass http://zerocopy_unix;"
        text = sub(
            r"(?<=location /files/ \{\n)\s+proxy_pass http://zerocopy_unix/;",
            m.group(1) + m.group(2),
            text,
            1,
        )
    return text


# Directive lines the test may change, and those it must find unchanged in what nginx runs.
REWRITTEN = re.compile(
    r"^\s*(user|pid|error_log|access_log|listen|server (127|unix)|\w+_temp_path|"
    r"proxy_pass http://zerocopy_unix/;)"
)
KEY_DIRECTIVES = (
    "proxy_http_version 1.1;",
    'proxy_set_header Connection "";',
    "proxy_set_header Host $host;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Host $host;",
    "proxy_set_header Range $http_range;",
    "proxy_set_header If-Range $http_if_range;",
    "proxy_buffering off;",
    "proxy_max_temp_file_size 0;",
    "client_max_body_size 64k;",
    "proxy_read_timeout",
    "proxy_send_timeout",
    "proxy_connect_timeout",
    "send_timeout",
    "location / {",
    "location /files/ {",
    "location = /files {",
)


def _directives(text: str) -> list[str]:
    """The non-comment lines, comments cut off, whitespace-normalized."""
    lines = (" ".join(line.split("#", 1)[0].split()) for line in text.splitlines())
    return [line for line in lines if line]


# --- processes ------------------------------------------------------------------------------


class UnixServerProcess(ServerProcess):
    """The server on a unix socket: ServerProcess's logs and stop, its own start-up."""

    def __init__(self, root: Path, sock: Path, args: list[str], logdir: Path) -> None:
        super().__init__(root, args, logdir=logdir)
        self.sock = sock

    def start(self, timeout: float = 15.0) -> UnixServerProcess:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.logdir / f"unix-{self.sock.stem}.out"
        self.stderr_path = self.logdir / f"unix-{self.sock.stem}.err"
        cmd = [sys.executable, "-m", "server", "--unix", str(self.sock), "-d", str(self.root)]
        cmd += ["--log-level", "debug", *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while f"at unix:{self.sock}\n" not in self.stdout():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self.stderr()}")
            time.sleep(0.02)
        return self


class Nginx(nginxproc.Nginx):
    """The shared runner, with the error lines these tests judge."""

    def errors(self) -> list[str]:
        """Error-level lines, but for the 413 that test_request_bodies_over_64k provokes."""
        lines = re.findall(r"^.*\[(?:error|crit|alert|emerg)\].*$", self.log(), re.M)
        return [line for line in lines if "client intended to send too large body" not in line]


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Data:
    root: Path
    big: Path
    big_sha256: str
    medium: bytes


@dataclass
class Stack:
    data: Data
    tcp: ServerProcess  # trusts 127.0.0.1 (the default), no --root-path
    unix: UnixServerProcess  # --root-path /files
    tcp_untrusted: ServerProcess  # --forwarded-allow-ips 10.9.9.9
    unix_untrusted: UnixServerProcess  # the same, on a unix socket
    main: Nginx  # deploy/nginx.conf as shipped: /files/ strips the prefix
    passing: Nginx  # its documented alternative: /files/ passes the prefix on
    untrusted: Nginx  # as shipped, in front of the two servers that trust no proxy

    def backend(self, upstream: str) -> ServerProcess:
        return self.tcp if upstream == "tcp" else self.unix


def _make_data(base: Path) -> Data:
    root = base / "root"
    (root / "dir").mkdir(parents=True)
    (root / "index.html").write_bytes(ROOT_INDEX)
    (root / "dir" / "index.html").write_bytes(DIR_INDEX)
    (root / "hello.txt").write_bytes(HELLO)
    medium = random.Random(7).randbytes(MEDIUM_SIZE)
    (root / "medium.bin").write_bytes(medium)
    big = root / "big.iso"
    rng = random.Random(11)
    with open(big, "wb") as f:
        f.truncate(BIG_SIZE)
        for offset in MARK_OFFSETS:
            f.seek(offset)
            f.write(rng.randbytes(MARK_LEN))
    digest = hashlib.sha256()
    with open(big, "rb") as f:
        while chunk := f.read(4 * 1024**2):
            digest.update(chunk)
    return Data(root, big, digest.hexdigest(), medium)


@pytest.fixture(scope="module")
def shipped_conf() -> str:
    return DEPLOY_CONF.read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shipped_conf: str) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("nginx-proxy")
    # A unix socket path is limited to 107 bytes; pytest's base can be long.
    sockdir = base if len(str(base)) < 80 else Path(tempfile.mkdtemp(prefix="zc-", dir="/tmp"))
    data = _make_data(base)
    logs = base / "logs"
    started: list[ServerProcess | Nginx] = []

    def track(proc):
        started.append(proc)
        return proc.start() if isinstance(proc, ServerProcess) else proc

    try:
        tcp = track(ServerProcess(data.root, [], logdir=logs))
        unix = track(
            UnixServerProcess(data.root, sockdir / "zc.sock", ["--root-path", "/files"], logs)
        )
        untrusted_args = ["--forwarded-allow-ips", "10.9.9.9"]
        tcp_untrusted = track(ServerProcess(data.root, untrusted_args, logdir=logs))
        unix_untrusted = track(
            UnixServerProcess(
                data.root,
                sockdir / "zc-untrusted.sock",
                ["--root-path", "/files", *untrusted_args],
                logs,
            )
        )

        def nginx(name: str, tcp_port: int, sock: Path, pass_prefix: bool = False) -> Nginx:
            prefix = base / name
            proc = track(Nginx(prefix))
            return proc.start(
                lambda port: derive_config(
                    shipped_conf,
                    prefix=prefix,
                    port=port,
                    tcp_port=tcp_port,
                    unix_socket=sock,
                    pass_prefix=pass_prefix,
                )
            )

        main = nginx("nginx-main", tcp.port, unix.sock)
        passing = nginx("nginx-pass", tcp.port, unix.sock, pass_prefix=True)
        untrusted = nginx("nginx-untrusted", tcp_untrusted.port, unix_untrusted.sock)
        yield Stack(data, tcp, unix, tcp_untrusted, unix_untrusted, main, passing, untrusted)
    finally:
        for proc in reversed(started):
            proc.stop()
        if sockdir != base:
            shutil.rmtree(sockdir, ignore_errors=True)
    for proc in started:
        if isinstance(proc, Nginx):
            assert proc.errors() == [], proc.log()[-3000:]
        else:
            assert proc.loop_errors() == [], proc.stderr()[-3000:]


# --- helpers --------------------------------------------------------------------------------


def request(
    nginx: Nginx,
    target: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    source: str | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=30, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=120, check=False)


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


def log_line(proc: ServerProcess, marker: str) -> str:
    """The server's access-log line for the request whose target carries ``marker``."""
    text = proc.wait_for_log(marker, stream="stdout")
    return next(line for line in text.splitlines() if marker in line)


def nginx_log_line(nginx: Nginx, marker: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in nginx.access_log().splitlines():
            if marker in line:
                return line
        time.sleep(0.02)
    raise AssertionError(f"{marker!r} not in nginx's access log")


def tag() -> str:
    return f"t{time.monotonic_ns()}"


def parse_byteranges(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body (RFC 9110 §14.6)."""
    m = re.fullmatch(r'multipart/byteranges; ?boundary="?([^";]+)"?', content_type)
    assert m, content_type
    delimiter = b"--" + m.group(1).encode()
    chunks = body.split(b"\r\n" + delimiter)
    # The first delimiter may come without a CRLF in front (no preamble).
    first = chunks[0]
    assert first in (b"", delimiter) or first.startswith(delimiter), first[:100]
    assert chunks[-1].startswith(b"--"), "no closing delimiter"
    parts = []
    for i, chunk in enumerate(chunks[:-1]):
        if i == 0:
            if not first.startswith(delimiter):
                continue  # the body began with CRLF: chunk 0 is an empty preamble
            chunk = chunk[len(delimiter) :]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        assert sep, chunk[:200]
        fields = dict(
            line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if line.strip()
        )
        parts.append((fields["Content-Range"], data))
    return parts


# --- the config under test ------------------------------------------------------------------


@pytest.mark.parametrize("pass_prefix", [False, True], ids=["strip", "pass"])
def test_config_is_the_shipped_file_with_only_test_rewrites(shipped_conf, tmp_path, pass_prefix):
    derived = derive_config(
        shipped_conf,
        prefix=tmp_path,
        port=8080,
        tcp_port=9000,
        unix_socket=tmp_path / "s.sock",
        pass_prefix=pass_prefix,
    )
    lines = _directives(derived)
    for directive in KEY_DIRECTIVES:
        assert any(line.startswith(directive) for line in lines), directive
    assert lines.count("keepalive 32;") == 2  # both upstreams keep connections open
    assert lines.count("keepalive_timeout 4s;") == 2
    assert "proxy_force_ranges on;" not in lines
    # No proxy_set_header inside a location: it would drop all the server-level ones there.
    for block in re.findall(r"location [^{]*\{([^}]*)\}", "\n".join(lines)):
        assert "proxy_set_header" not in block
    # Every shipped directive the test did not mean to rewrite reaches nginx unchanged.
    kept = set(lines)
    for line in _directives(shipped_conf):
        assert line in kept or REWRITTEN.match(line), f"rewritten unexpectedly: {line}"
    assert "listen 127.0.0.1:8080;" in lines
    assert "server 127.0.0.1:9000;" in lines
    assert f"server unix:{tmp_path}/s.sock;" in lines
    passes = [line for line in lines if line.startswith("proxy_pass http://zerocopy_unix")]
    if pass_prefix:
        assert passes == ["proxy_pass http://zerocopy_unix;"] * 2
    else:
        assert passes == ["proxy_pass http://zerocopy_unix/;", "proxy_pass http://zerocopy_unix;"]


def test_upstream_connections_are_kept_alive(stack):
    """HTTP/1.1, Connection "" and keepalive 32: 20 requests reuse one backend connection."""
    backend_port = stack.tcp.port

    def backend_peers() -> set[int]:
        """nginx's ports of every TCP connection to the backend (any state)."""
        ports = set()
        with open("/proc/net/tcp") as f:
            next(f)
            for row in f:
                fields = row.split()
                local, remote, state = fields[1], fields[2], fields[3]
                lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
                if rport == backend_port:
                    ports.add(lport)
                elif lport == backend_port and state != "0A":  # 0A: LISTEN
                    ports.add(rport)
        return ports

    before = backend_peers()
    marker = tag()
    urls = [f"http://127.0.0.1:{stack.main.port}/hello.txt?{marker}-{i}" for i in range(20)]
    result = curl(*[arg for url in urls for arg in (url, "-o", "/dev/null")])
    assert result.returncode == 0, result.stderr
    for i in range(20):
        assert '" 200 ' in log_line(stack.tcp, f"{marker}-{i} ")
    new = backend_peers() - before
    # Without keep-alive every request opens (and leaves in TIME_WAIT) its own connection.
    assert len(new) <= 1, f"{len(new)} new backend connections for 20 requests"


# --- downloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", list(MOUNTS))
def test_full_download_of_a_1gib_sparse_file_is_byte_exact(stack, upstream):
    marker = tag()
    target = f"{MOUNTS[upstream]}/big.iso?{marker}"
    url = f"http://127.0.0.1:{stack.main.port}{target}"
    proc = subprocess.Popen([CURL, "-sS", "--fail", url], stdout=subprocess.PIPE)
    digest, size = hashlib.sha256(), 0
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1024**2):
        digest.update(chunk)
        size += len(chunk)
    assert proc.wait(60) == 0
    assert size == BIG_SIZE
    assert digest.hexdigest() == stack.data.big_sha256
    backend = stack.backend(upstream)
    backend_target = f"/big.iso?{marker}"  # the /files/ location strips the prefix
    assert f'"GET {backend_target} HTTP/1.1" 200 {BIG_SIZE} ' in log_line(backend, marker)
    # Behind nginx the body still goes out with sendfile (uvloop's, or the stdlib loop's).
    assert backend.send_paths_for(backend_target) in (["sendfile"], ["loop.sendfile"])
    # proxy_buffering off / proxy_max_temp_file_size 0: nothing was spooled to disk (nginx
    # warns of each response it buffers to a temporary file).
    assert "buffered to a temporary file" not in stack.main.log()


@pytest.mark.parametrize("upstream", list(MOUNTS))
def test_single_ranges_and_if_range(stack, upstream):
    big = stack.data.big
    mount = MOUNTS[upstream]
    # Across the mark at 512 MiB + 7.
    first, last = 512 * 1024**2 - 20, 512 * 1024**2 + 4100
    status, headers, body = request(
        stack.main, f"{mount}/big.iso", {"Range": f"bytes={first}-{last}"}
    )
    assert status == 206
    assert headers["Content-Range"] == f"bytes {first}-{last}/{BIG_SIZE}"
    assert int(headers["Content-Length"]) == last - first + 1
    assert body == read_at(big, first, last - first + 1)
    # A suffix range: the file's last bytes (the final mark).
    status, headers, body = request(stack.main, f"{mount}/big.iso", {"Range": "bytes=-5000"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {BIG_SIZE - 5000}-{BIG_SIZE - 1}/{BIG_SIZE}"
    assert body == read_at(big, BIG_SIZE - 5000, 5000)
    # Unsatisfiable: 416 with the length, what curl -C - on a complete file relies on.
    status, headers, _ = request(stack.main, f"{mount}/big.iso", {"Range": f"bytes={BIG_SIZE}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{BIG_SIZE}"
    # If-Range reaches the backend: its ETag lets the range apply, a stale one gets 200.
    status, headers, _ = request(stack.main, f"{mount}/medium.bin", method="HEAD")
    assert status == 200
    etag = headers["ETag"]
    assert etag and etag.startswith('"')
    status, _, body = request(
        stack.main, f"{mount}/medium.bin", {"Range": "bytes=100-199", "If-Range": etag}
    )
    assert (status, body) == (206, stack.data.medium[100:200])
    status, _, body = request(
        stack.main, f"{mount}/medium.bin", {"Range": "bytes=100-199", "If-Range": '"stale"'}
    )
    assert (status, body) == (200, stack.data.medium)


@pytest.mark.parametrize("upstream", list(MOUNTS))
def test_multipart_byteranges_are_relayed_intact(stack, upstream):
    big = stack.data.big
    spans = [(0, 99), (512 * 1024**2, 512 * 1024**2 + 300), (BIG_SIZE - 500, BIG_SIZE - 1)]
    spec = "bytes=0-99,536870912-536871212,-500"
    status, headers, body = request(stack.main, f"{MOUNTS[upstream]}/big.iso", {"Range": spec})
    assert status == 206
    assert int(headers["Content-Length"]) == len(body)
    parts = parse_byteranges(headers["Content-Type"], body)
    assert [cr for cr, _ in parts] == [f"bytes {a}-{b}/{BIG_SIZE}" for a, b in spans]
    for (a, b), (_, data) in zip(spans, parts, strict=True):
        assert data == read_at(big, a, b - a + 1)


@pytest.mark.parametrize("upstream", list(MOUNTS))
@pytest.mark.parametrize("name", ["medium.bin", "big.iso"])
def test_curl_resume_through_the_proxy_is_byte_exact(stack, tmp_path, upstream, name):
    source = stack.data.root / name
    size = source.stat().st_size
    have = 3_000_001 if name == "medium.bin" else BIG_SIZE - 3 * 1024**2 - 333
    out = tmp_path / name
    with open(source, "rb") as src, open(out, "wb") as dst:
        if name == "medium.bin":
            dst.write(src.read(have))
        else:  # the 1 GiB file: a sparse partial copy, then only the tail is compared
            dst.truncate(have)
            for offset in MARK_OFFSETS:
                if offset < have:
                    dst.seek(offset)
                    dst.write(os.pread(src.fileno(), min(MARK_LEN, have - offset), offset))
    marker = tag()
    url = f"http://127.0.0.1:{stack.main.port}{MOUNTS[upstream]}/{name}?{marker}"
    result = curl("--fail", "-C", "-", "-o", str(out), url)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size == size
    if name == "medium.bin":
        assert out.read_bytes() == stack.data.medium
    else:
        start = have - 4096
        assert read_at(out, start, size - start) == read_at(source, start, size - start)
    line = log_line(stack.backend(upstream), marker)
    assert f'HTTP/1.1" 206 {size - have} ' in line  # the backend served the rest only


# --- X-Forwarded-For ------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", list(MOUNTS))
@pytest.mark.parametrize(
    "client, xff, logged",
    [
        # nginx appends the address it saw: the server logs that, not the client's claim.
        pytest.param(CLIENT, SPOOFED, CLIENT, id="spoof-ignored"),
        pytest.param(CLIENT, None, CLIENT, id="plain"),
        # A client at 127.0.0.1 is itself a trusted proxy: its hop is skipped, so what it
        # forwarded is believed (the chain's nearest untrusted address).
        pytest.param("127.0.0.1", SPOOFED, SPOOFED, id="trusted-hop-skipped"),
    ],
)
def test_forwarded_client_address_when_nginx_is_trusted(stack, upstream, client, xff, logged):
    marker = tag()
    headers = {"X-Forwarded-For": xff} if xff else {}
    status, _, body = request(
        stack.main, f"{MOUNTS[upstream]}/hello.txt?{marker}", headers, source=client
    )
    assert (status, body) == (200, HELLO)
    # nginx saw the client's real address, and the server logs what the chain says.
    assert nginx_log_line(stack.main, marker).split(" ", 1)[0] == client
    assert log_line(stack.backend(upstream), marker).split(" ", 1)[0] == logged


@pytest.mark.parametrize(
    "upstream, logged",
    [
        # TCP: nginx (127.0.0.1) is not in --forwarded-allow-ips 10.9.9.9: its peer address.
        pytest.param("tcp", "127.0.0.1", id="tcp-untrusted"),
        # A unix-socket peer is always trusted: the address nginx appended.
        pytest.param("unix", CLIENT, id="unix-always-trusted"),
    ],
)
def test_forwarded_client_address_when_nginx_is_not_trusted(stack, upstream, logged):
    marker = tag()
    status, _, _ = request(
        stack.untrusted,
        f"{MOUNTS[upstream]}/hello.txt?{marker}",
        {"X-Forwarded-For": SPOOFED},
        source=CLIENT,
    )
    assert status == 200
    backend = stack.tcp_untrusted if upstream == "tcp" else stack.unix_untrusted
    assert log_line(backend, marker).split(" ", 1)[0] == logged


# --- --root-path: the /files/ mount ---------------------------------------------------------


@pytest.mark.parametrize("mount", ["strip", "pass"])
def test_root_path_redirects_behind_the_mount(stack, mount):
    nginx = stack.main if mount == "strip" else stack.passing
    base = f"http://127.0.0.1:{nginx.port}"
    status, headers, _ = request(nginx, "/files/dir")
    assert (status, headers["Location"]) == (301, "dir/")
    status, headers, _ = request(nginx, "/files")
    assert (status, headers["Location"]) == (301, "files/")
    # Following them lands inside the mount, on the index pages.
    for target, landing, index in [
        ("/files/dir", "/files/dir/", DIR_INDEX),
        ("/files", "/files/", ROOT_INDEX),
    ]:
        result = curl("-L", "-w", "\n%{url_effective} %{num_redirects}", base + target)
        assert result.returncode == 0, result.stderr
        body, _, info = result.stdout.rpartition(b"\n")
        assert (body, info.decode()) == (index, f"{base}{landing} 1")
    status, _, body = request(nginx, "/files/hello.txt")
    assert (status, body) == (200, HELLO)
    # The query survives the redirect; and the backend saw the prefix only when passed on.
    marker = tag()
    status, headers, _ = request(nginx, f"/files/dir?{marker}")
    assert (status, headers["Location"]) == (301, f"dir/?{marker}")
    seen = "/dir" if mount == "strip" else "/files/dir"
    assert f'"GET {seen}?{marker} HTTP/1.1" 301 ' in log_line(stack.unix, marker)


def test_site_root_redirect_over_tcp(stack):
    status, headers, _ = request(stack.main, "/dir")
    assert (status, headers["Location"]) == (301, "dir/")
    base = f"http://127.0.0.1:{stack.main.port}"
    result = curl("-L", "-w", "\n%{url_effective}", base + "/dir")
    body, _, url = result.stdout.rpartition(b"\n")
    assert (body, url.decode()) == (DIR_INDEX, f"{base}/dir/")


def test_request_bodies_over_64k_are_refused_by_nginx(stack):
    marker = tag()
    status, _, _ = request(
        stack.main, f"/hello.txt?{marker}", {"Content-Length": str(65 * 1024)}, method="GET"
    )
    assert status == 413
    # nginx refused it itself (client_max_body_size 64k): the backend never saw it.
    time.sleep(0.2)
    assert marker not in stack.tcp.stdout()


# --- --max-connections-per-ip behind the shipped config ---------------------------------------


def _slow_download(port: int, target: str, source: str) -> socket.socket:
    """A download that stays open: a few KB read, then the client stops reading."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    return sock


def test_per_client_cap_behind_nginx_tells_clients_apart_by_forwarded_address(
    tmp_path, shipped_conf
):
    """Several clients through one proxy: the cap counts each by the address nginx puts in
    X-Forwarded-For, not by nginx's own (one address for all of them)."""
    data = _make_data(tmp_path)
    backend = ServerProcess(data.root, ["--max-connections-per-ip", "1"], logdir=tmp_path / "l")
    proxy = Nginx(tmp_path / "nginx")
    with backend:
        proxy.start(
            lambda port: derive_config(
                shipped_conf,
                prefix=tmp_path / "nginx",
                port=port,
                tcp_port=backend.port,
                unix_socket=tmp_path / "none.sock",
                pass_prefix=False,
            )
        )
        try:
            held = _slow_download(proxy.port, "/medium.bin", "127.0.0.2")
            try:
                status, headers, _ = request(proxy, "/hello.txt", source="127.0.0.2")
                assert status == 429 and headers["Retry-After"] == "1"
                status, _, body = request(proxy, "/hello.txt", source="127.0.0.3")
                assert (status, body) == (200, HELLO)  # another client, another count
            finally:
                held.close()
            deadline = time.monotonic() + 10
            while request(proxy, "/hello.txt", source="127.0.0.2")[0] != 200:
                assert time.monotonic() < deadline, "the client's slot was never freed"
                time.sleep(0.1)
        finally:
            proxy.stop()
    assert "127.0.0.2 - - " in backend.stdout() and '" 429 ' in backend.stdout()
