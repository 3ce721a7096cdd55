"""The container image, built from the Dockerfile and run for real, without a Docker engine.

Daemonless tools from Debian's packages do what ``docker build`` and ``docker run`` would:
``buildah bud`` builds the Dockerfile as it is, ``podman`` (with runc) runs the image. Docker
Hub is out of reach here, so the Dockerfile's ``BASE`` build argument points at a stand-in
for ``python:3.11-slim`` made from Debian's own packages with ``debootstrap`` (bookworm:
Python 3.11, as in the official image). The stand-in is cached between runs (see
``cache_dir``), so only the first run pays for it (about a minute); the image build itself
takes seconds. Every podman and buildah call uses a storage root of this test's own, so
nothing is left in the machine's container store.

Checked against the running container: a file served byte-exact over ``--network host``,
with single and multipart ranges; the server runs as uid 10001; a ``--read-only`` root with
the files mounted ``:ro`` works; ``podman stop`` (SIGTERM) lets a download in flight finish
and the server exits 0; ``podman healthcheck run`` passes against the image's own
HEALTHCHECK and default command. The build time and the image size are printed.

Skipped, with the reason, only where the tools cannot run (not installed, not root, or
podman cannot start a container). ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"

# The stand-in base: what debootstrap installs, and what is changed afterwards to make it
# behave like the official image (python and pip on PATH under those names, and pip allowed
# to install into the system interpreter, as PEP 668's marker would otherwise refuse).
SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python3-venv", "passwd")
STANDIN_TAG = f"localhost/zerocopy-standin-python:{SUITE}"
IMAGE_TAG = "localhost/zerocopy-server:test"
UID = 10001

TOOLS = ("buildah", "podman", "runc", "debootstrap")
# crun fails on this machine's cgroup hybrid mode, and setting RLIMIT_NOFILE is refused in
# the sandbox: runc, and no default ulimits. Events go to a file (there is no systemd bus).
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""


def cache_dir() -> Path:
    """Where the stand-in base is kept between runs: ``$ZEROCOPY_TEST_CACHE``, else
    ``$XDG_CACHE_HOME/zerocopy-server-tests``, else ``~/.cache/zerocopy-server-tests``."""
    explicit = os.environ.get("ZEROCOPY_TEST_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "zerocopy-server-tests"


def _unavailable() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    if os.geteuid() != 0:
        return "debootstrap and rootful podman need root"
    return None


@dataclass
class Engine:
    """buildah and podman on one private storage root."""

    root: Path
    runroot: Path
    env: dict[str, str]

    def _global(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs"]

    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        cmd = ["podman", "--runtime", "runc", *self._global(), *args]
        return self._run(cmd, timeout, check)

    def logs(self, name: str) -> str:
        """The container's stdout and stderr (podman logs replays them on its own two)."""
        cmd = ["podman", "--runtime", "runc", *self._global(), "logs", name]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def buildah(self, *args: str, timeout: float = 900) -> str:
        return self._run(["buildah", *self._global(), *args], timeout, True)

    def _run(self, cmd: list[str], timeout: float, check: bool) -> str:
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout


class _Reporter:
    """_report through pytest's capture manager (module fixtures get no capsys)."""

    def __init__(self, capman: object) -> None:
        self.capman = capman

    def __call__(self, line: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        with open(ARTIFACTS / "image.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        ctx = (
            self.capman.global_and_fixture_disabled()  # type: ignore[attr-defined]
            if self.capman is not None
            else contextlib.nullcontext()
        )
        with ctx:
            print(f"\n[image] {line}", flush=True)


def _recipe_key() -> str:
    recipe = json.dumps([SUITE, PACKAGES, "minbase", "python-links", "no-pep668", "v2"])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def standin_tarball(report: _Reporter) -> Path:
    """The stand-in base's root file system as a tar, made once and cached."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"standin-python-{SUITE}-{_recipe_key()}.tar"
    with open(cache / "standin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build it once
        if tarball.exists():
            return tarball
        work = Path(str(tarball) + ".work")
        shutil.rmtree(work, ignore_errors=True)
        rootfs = work / "rootfs"
        started = time.monotonic()
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr}"
        # As in the official image: `python` and `pip` are the 3.11 ones, and pip may install
        # into the system interpreter (PEP 668's marker would refuse: the image has no apt
        # Python packages to protect).
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        (rootfs / "usr/bin/python").symlink_to("python3")
        assert (rootfs / "usr/bin/pip").exists()
        # What the official slim image leaves out too: package caches, docs, manuals.
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
        ):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        partial = Path(str(tarball) + ".partial")
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            check=True,
            timeout=300,
        )
        partial.rename(tarball)
        shutil.rmtree(work, ignore_errors=True)
        report(f"stand-in base made with debootstrap in {time.monotonic() - started:.0f} s")
        return tarball


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    why = _unavailable()
    if why:
        pytest.skip(f"container tools cannot run here: {why}")
    base = tmp_path_factory.mktemp("containers")
    conf = base / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    eng = Engine(root=base / "storage", runroot=base / "run", env=env)
    # Can podman start a container at all here (kernel, cgroups, runc)? An empty rootfs
    # with a static binary is not at hand, so ask for the host view of the engine instead.
    try:
        eng.podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"podman cannot run here: {exc}")
    try:
        yield eng
    finally:
        eng.podman("rm", "--all", "--force", "--time", "0", timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)  # the vfs layers: hundreds of MB


@dataclass
class Image:
    tag: str
    build_seconds: float
    size: int
    base_size: int
    config: dict


@pytest.fixture(scope="module")
def image(engine: Engine, request: pytest.FixtureRequest) -> Image:
    reporter = _Reporter(request.config.pluginmanager.get_plugin("capturemanager"))
    tarball = standin_tarball(reporter)
    engine.podman("import", str(tarball), STANDIN_TAG, timeout=300)

    build = ["bud", "--format", "docker", "--isolation", "chroot", "--network", "host"]
    build += ["--build-arg", f"BASE={STANDIN_TAG}", "--layers=false"]
    # pip inside the build trusts what the host trusts (a TLS-inspecting proxy's CA here):
    # bind-mounted read-only into the RUN steps only, never into a layer.
    for certs in ("/etc/ssl/certs",):
        if Path(certs).is_dir():
            build += ["-v", f"{certs}:{certs}:ro"]
    started = time.monotonic()
    engine.buildah(*build, "-t", IMAGE_TAG, str(REPO))
    seconds = time.monotonic() - started

    (config,) = json.loads(engine.podman("image", "inspect", IMAGE_TAG))
    (base,) = json.loads(engine.podman("image", "inspect", STANDIN_TAG))
    img = Image(IMAGE_TAG, seconds, int(config["Size"]), int(base["Size"]), config)
    reporter(
        f"image built in {img.build_seconds:.1f} s; size {img.size / 1e6:.1f} MB "
        f"(stand-in base {img.base_size / 1e6:.1f} MB + {(img.size - img.base_size) / 1e6:.1f}"
        " MB of server, dependencies and user)"
    )
    return img


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_dir(tmp_path: Path) -> tuple[Path, bytes]:
    srv = tmp_path / "srv"
    srv.mkdir()
    srv.chmod(0o755)  # the server runs as uid 10001
    payload = secrets.token_bytes(48 * 1024 * 1024)
    (srv / "big.bin").write_bytes(payload)
    (srv / "small.txt").write_bytes(b"hello from the container\n")
    for f in srv.iterdir():
        f.chmod(0o644)
    return srv, payload


@contextlib.contextmanager
def _container(engine: Engine, *args: str) -> Iterator[str]:
    name = f"zc-test-{secrets.token_hex(4)}"
    engine.podman("run", "-d", "--name", name, *args)
    try:
        yield name
    finally:
        engine.podman("rm", "--force", "--time", "0", name, check=False)


def _wait_serving(engine: Engine, name: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        logs = engine.logs(name)
        if re.search(r"^Serving /srv (\(.*\) )?at http://", logs, re.M):
            return logs
        time.sleep(0.1)
    state = engine.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
    raise AssertionError(f"no Serving line from the container ({state}):\n{logs}")


def _http(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, bytes]:
    """One raw HTTP/1.1 exchange with Connection: close: (head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _get(port: int, path: str, *headers: str) -> tuple[bytes, bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()
    return _http(port, req)


def test_image_config_keeps_the_dockerfile_promises(image: Image) -> None:
    cfg = image.config["Config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ["zerocopy-server"]
    assert "--directory" in cfg["Cmd"] and "/srv" in cfg["Cmd"]
    assert cfg["StopSignal"] == "SIGTERM"
    assert "8000/tcp" in cfg["ExposedPorts"]
    # --format docker keeps HEALTHCHECK (the OCI format has no such field).
    health = image.config.get("Healthcheck")
    assert health and health["Test"][0] == "CMD" and "127.0.0.1:8000" in " ".join(health["Test"])


def test_container_serves_ranges_read_only_as_uid_10001_and_drains_on_stop(
    engine: Engine, image: Image, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    srv, payload = _serve_dir(tmp_path)
    port = _free_port()
    args = ["--network", "host", "--read-only", "-v", f"{srv}:/srv:ro", image.tag]
    args += ["--bind", "127.0.0.1", "--port", str(port), "--directory", "/srv"]
    args += ["--shutdown-timeout", "8"]
    with _container(engine, *args) as name:
        _wait_serving(engine, name)

        # Byte-exact, whole and in ranges.
        head, body = _get(port, "/big.bin")
        assert head.startswith(b"HTTP/1.1 200 ") and body == payload
        head, body = _get(port, "/big.bin", "Range: bytes=1000-1999")
        assert head.startswith(b"HTTP/1.1 206 ") and body == payload[1000:2000]
        assert b"Content-Range: bytes 1000-1999/50331648" in head
        head, body = _get(port, "/big.bin", "Range: bytes=-10")
        assert head.startswith(b"HTTP/1.1 206 ") and body == payload[-10:]
        head, body = _get(port, "/small.txt", "Range: bytes=0-4,6-9")
        assert head.startswith(b"HTTP/1.1 206 ")
        assert b"multipart/byteranges" in head and b"hello" in body and b"from" in body
        head, _ = _get(port, "/big.bin", "Range: bytes=60000000-")
        assert head.startswith(b"HTTP/1.1 416 ")

        # The server process, PID 1 in the container, runs as uid 10001.
        status = engine.podman("exec", name, "cat", "/proc/1/status")
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
        assert uids and uids.groups() == (str(UID), str(UID)), status
        assert engine.podman("exec", name, "id", "-u").strip() == str(UID)
        # The root file system and the served volume are read-only.
        ro = engine.podman("exec", name, "sh", "-c", "touch /srv/x 2>&1; echo rc=$?", check=False)
        assert "Read-only file system" in ro and "rc=1" in ro, ro
        ro = engine.podman("exec", name, "sh", "-c", "touch /etc/x 2>&1; echo rc=$?", check=False)
        assert "Read-only file system" in ro and "rc=1" in ro, ro

        # SIGTERM with a download in flight: the download finishes, the server exits 0.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(256 * 1024)
            stopped: dict[str, float] = {}

            def stop() -> None:
                t0 = time.monotonic()
                engine.podman("stop", "--time", "15", name, timeout=60)
                stopped["seconds"] = time.monotonic() - t0

            stopper = threading.Thread(target=stop)
            stopper.start()
            deadline = time.monotonic() + 10
            while "shutting down" not in engine.logs(name):
                assert time.monotonic() < deadline, "the server never saw SIGTERM"
                time.sleep(0.05)
            assert stopper.is_alive(), "the container stopped with a download in flight"
            # The listener is closed: new connections are refused, the old one goes on.
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            while b"\r\n\r\n" not in data:
                data += s.recv(1 << 20)
            head, _, body = data.partition(b"\r\n\r\n")
            found = re.search(rb"(?im)^content-length: *(\d+)", head)
            assert found, head
            length = int(found.group(1))
            while len(body) < length and (chunk := s.recv(1 << 20)):
                body += chunk
            # Once its response is done, a draining server closes the connection (and
            # lingers until the client closes its side: as a client does, at once).
            assert s.recv(1) == b""
        stopper.join(timeout=30)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == payload, f"{len(body)} of {len(payload)} bytes"
        exit_code = engine.podman("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        assert exit_code == "0", engine.logs(name)
        assert stopped["seconds"] < 12, stopped  # podman kills at --time 15: exit 137
        assert "Traceback" not in engine.logs(name)
    _Reporter(request.config.pluginmanager.get_plugin("capturemanager"))(
        f"container checks passed: byte-exact and ranges over --network host, uid {UID},"
        f" --read-only with a :ro volume, SIGTERM drained a download in flight in"
        f" {stopped['seconds']:.2f} s and exited 0"
    )


def test_healthcheck_passes_with_the_image_defaults(
    engine: Engine, image: Image, tmp_path: Path
) -> None:
    """The image's own CMD (port 8000 inside) and HEALTHCHECK, published on a free port."""
    srv, _ = _serve_dir(tmp_path)
    port = _free_port()
    try:
        ctx = _container(engine, "-p", f"127.0.0.1:{port}:8000", "-v", f"{srv}:/srv:ro", image.tag)
        name = ctx.__enter__()
    except AssertionError as exc:
        pytest.skip(f"podman cannot publish a port here (no container networking): {exc}")
    try:
        _wait_serving(engine, name)
        head, body = _get(port, "/small.txt")
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello from the container\n"
        done = subprocess.run(
            ["podman", "--runtime", "runc", *engine._global(), "healthcheck", "run", name],
            env=engine.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "unhealthy" not in done.stdout
    finally:
        ctx.__exit__(None, None, None)
