"""The deployment files: Dockerfile, .dockerignore, deploy/kubernetes.yaml, systemd units.

No Docker engine or cluster is needed. The Dockerfile is parsed and its promises checked
(multi-stage slim build, non-root user, port, stop signal, health check, exec form), then
its build steps are *run* outside Docker: the builder's COPY (honouring .dockerignore) and
``pip wheel``, the final stage's ``pip install`` into a fresh venv, ENTRYPOINT + CMD with
/srv and the port substituted, the HEALTHCHECK command, and the STOPSIGNAL. The manifest
and the units are parsed (a small YAML-subset parser: PyYAML is no dependency of ours) and
their server options are checked with the server's own argument parser.

Runtime: about 10 s, most of it the venv and the wheel build (pip fetches the build
backend as the Dockerfile's builder does); each subprocess has a timeout.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.process.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes.yaml"
SERVICE = DEPLOY / "zerocopy-server.service"
SOCKET = DEPLOY / "zerocopy-server.socket"

CONTAINER_PORT = "8000"
SERVING = re.compile(r"^Serving (.+?)(?: \(.*\))? at http://(\S+):(\d+)/$", re.M)


# --- Dockerfile parser -------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    rest: str  # everything after the keyword and its --flags, continuations joined
    flags: list[str]  # leading --name=value options (RUN --mount=..., COPY --from=...)
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for shell form."""
        text = self.rest.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None  # Docker, too, falls back to shell form for an invalid array
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return None
        return value

    def flag(self, name: str) -> str | None:
        for f in self.flags:
            key, _, value = f[2:].partition("=")
            if key == name:
                return value
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


_FLAG_KEYWORDS = {"FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"}


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comment lines dropped (the rules of
    Docker's parser for the default escape character)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (also inside a continuation) and blank lines
        if not pending:
            start = number
        body = raw.rstrip()
        if body.endswith("\\"):
            pending.append(body[:-1])
            continue
        pending.append(body)
        joined = " ".join(part.strip() for part in pending if part.strip())
        pending = []
        keyword, _, rest = joined.partition(" ")
        keyword = keyword.upper()
        flags: list[str] = []
        if keyword in _FLAG_KEYWORDS:
            while rest.lstrip().startswith("--"):
                token, _, rest = rest.lstrip().partition(" ")
                flags.append(token)
        instructions.append(Instruction(keyword, rest.strip(), flags, start))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages(text: str) -> list[Stage]:
    """Stages, with FROM's ``${ARG}`` references resolved to the defaults of the ARGs declared
    before the first FROM (what a build without --build-arg uses)."""
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for ins in parse_dockerfile(text):
        if ins.keyword == "FROM":
            words = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], ins.rest
            ).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif ins.keyword == "ARG" and not stages:
            key, _, default = ins.rest.partition("=")
            args[key.strip()] = default.strip()
        else:
            assert stages, f"line {ins.line}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV values (``ENV K=V K2=V2`` and the legacy ``ENV K V``)."""
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        words = shlex.split(ins.rest)
        if words and "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
        else:
            env.update(w.split("=", 1) for w in words)
    return env


def healthcheck_parts(ins: Instruction) -> tuple[dict[str, str], list[str] | None]:
    """(--options, exec-form command) of a HEALTHCHECK (command None for NONE/shell form)."""
    options = {f[2:].partition("=")[0]: f.partition("=")[2] for f in ins.flags}
    keyword, _, command = ins.rest.partition(" ")
    if keyword.upper() != "CMD":
        return options, None
    return options, Instruction("CMD", command, [], ins.line).exec_form()


def seconds(duration: str) -> float:
    """A Docker or systemd duration: 5s, 1m30s, 2min, 35 (seconds), 500ms."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    text = duration.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(DOCKERFILE.read_text())


def test_parser_handles_continuations_comments_and_exec_form() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim AS b\n"
        "RUN --mount=type=cache,target=/c \\\n"
        "    # a comment inside the continuation\n"
        "    pip install \\\n"
        "      x\n"
        'HEALTHCHECK --interval=5s CMD ["python", "-c", "print(\\"a b\\")"]\n'
        'ENV A=1 B="two words"\n'
        "CMD echo shell form\n"
    )
    (stage,) = dockerfile_stages(text)
    assert (stage.base, stage.name) == ("python:3.11-slim", "b")
    two = dockerfile_stages("ARG BASE=python:3.12-slim\nFROM ${BASE} AS b\nFROM $BASE\n")
    assert [(s.base, s.name) for s in two] == [
        ("python:3.12-slim", "b"),
        ("python:3.12-slim", None),
    ]
    run = stage.all("RUN")[0]
    assert run.flags == ["--mount=type=cache,target=/c"]
    assert run.rest == "pip install x"
    assert run.line == 3
    options, command = healthcheck_parts(stage.all("HEALTHCHECK")[0])
    assert options == {"interval": "5s"}
    assert command == ["python", "-c", 'print("a b")']
    assert env_of(stage) == {"A": "1", "B": "two words"}
    assert stage.all("CMD")[0].exec_form() is None
    assert [seconds(d) for d in ("5s", "1m30s", "35", "2min", "500ms")] == [5, 90, 35, 120, 0.5]


def test_dockerfile_is_a_small_multi_stage_build(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "expected a builder stage and a final stage"
    # The base is selectable (tests/test_image.py builds on a stand-in), one ARG for both
    # stages, and users get the official slim image by default.
    assert re.search(r"^ARG BASE=python:3\.\d+-slim$", DOCKERFILE.read_text(), re.M)
    assert all(
        re.match(r"FROM \$\{BASE\}", line)
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("FROM")
    )
    for stage in stages:
        assert re.fullmatch(r"python:3\.\d+-slim(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    builder, final = stages[0], stages[-1]
    assert builder.name, "the builder stage needs a name for --from"
    builder_runs = " ".join(i.rest for i in builder.all("RUN"))
    assert re.search(r"\bpip (wheel|install)\b", builder_runs)
    # The final stage installs wheels from the builder, nothing from the source tree, and no
    # compiler or package-manager installs.
    final_runs = final.all("RUN")
    pip_installs = [i for i in final_runs if re.search(r"\bpip install\b", i.rest)]
    assert pip_installs, "the final stage must pip install the built wheel"
    for ins in final_runs:
        assert not re.search(r"\b(apt-get|apt|gcc|build-essential)\b", ins.rest), ins.rest
    for ins in final.all("COPY") + final.all("ADD"):
        assert ins.flag("from") == builder.name, f"line {ins.line}: COPY of the source tree"
    for ins in pip_installs:
        mount = ins.flag("mount") or ""
        copied = any(i.flag("from") == builder.name for i in final.all("COPY"))
        assert f"from={builder.name}" in mount or copied, "wheels come from the builder"
    # Every pip install anywhere leaves no cache in a layer.
    for stage in stages:
        for ins in stage.all("RUN"):
            if re.search(r"\bpip (install|wheel)\b", ins.rest):
                assert "--no-cache-dir" in ins.rest, f"line {ins.line}: {ins.rest}"


def test_dockerfile_runtime_settings(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.last("USER")
    assert user is not None, "the final stage must switch to an unprivileged USER"
    name, _, group = user.rest.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0"), user.rest
    # Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
    assert name.isdigit(), "USER should be numeric (uid[:gid])"
    # USER comes after every RUN: installing needs root, serving must not have it.
    assert all(i.line < user.line for i in final.all("RUN"))

    assert [v for i in final.all("EXPOSE") for v in i.rest.split()] == [CONTAINER_PORT]
    stop = final.last("STOPSIGNAL")
    assert stop is not None and stop.rest in ("SIGTERM", "TERM", "15")
    volumes = [v for i in final.all("VOLUME") for v in (i.exec_form() or i.rest.split())]
    assert volumes == ["/srv"]
    workdir = final.last("WORKDIR")
    assert workdir is not None and workdir.rest == "/srv"

    entry, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entry is not None and cmd is not None
    # Exec form, so the server is PID 1 and receives the stop signal itself.
    assert entry.exec_form() == ["zerocopy-server"]
    argv = cmd.exec_form()
    assert argv is not None, "CMD must be exec form"
    args = build_parser().parse_args(argv)
    assert args.bind == "0.0.0.0"
    assert str(args.port if args.port is not None else args.port_arg) == CONTAINER_PORT
    assert args.directory == "/srv"
    # docker stop sends SIGKILL 10 s after the stop signal: drain for less than that.
    assert args.shutdown_timeout < 10

    health = final.last("HEALTHCHECK")
    assert health is not None
    options, command = healthcheck_parts(health)
    assert command is not None, "HEALTHCHECK CMD in exec form (the slim image's python)"
    assert command[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{CONTAINER_PORT}/" in command[2], "a real HTTP request"
    assert seconds(options.get("timeout", "30s")) <= seconds(options.get("interval", "30s"))


# --- .dockerignore -----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a path is excluded when the last pattern that matches it, or one of its
    parent directories, is not a ``!`` exception."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


def test_dockerignore_keeps_junk_out_and_the_build_inputs_in() -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    for junk in (
        ".git/config",
        ".git",
        ".venv/bin/python",
        "venv/lib/site.py",
        "server/__pycache__/cli.cpython-311.pyc",
        "server/cli.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        ".benchmarks/x",
        "loadtest/results/results.png",
        "test-artifacts/load-figures.txt",
        "docs/loadtest.png",
        "tests/test_http.py",
        "build/lib/server/cli.py",
        "dist/zerocopy_server-0.1.0.whl",
        "zerocopy_server.egg-info/PKG-INFO",
    ):
        assert excluded(junk, rules), f"{junk} would be sent to the builder"
    for needed in ("pyproject.toml", "README.md", "server/cli.py", "server/__init__.py"):
        assert not excluded(needed, rules), f"{needed} is needed to build the wheel"


def test_dockerignore_matcher() -> None:
    rules = dockerignore_rules("*\n!keep\n**/*.tmp\ndocs/*.png\n!docs/a.png\n")
    assert excluded("x.txt", rules)
    assert not excluded("keep/a/b.txt", rules)
    assert excluded("keep/a/b.tmp", rules)
    assert excluded("docs/b.png", rules)
    assert not excluded("docs/a.png", rules)  # an exception inside an excluded directory
    assert excluded("docs/sub/b.png", rules)  # via the parent "docs" matching "*"


# --- running the Dockerfile's steps outside Docker -----------------------------------------


def _clean_env() -> dict[str, str]:
    """The caller's environment (pip's settings included) minus what would steer Python to
    another tree or environment."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 90) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


def _pip_argv(words: list[str]) -> list[str]:
    """The arguments after ``pip`` / ``pip3`` / ``python -m pip``."""
    if words[0] in ("pip", "pip3"):
        return words[1:]
    if words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        return words[3:]
    raise AssertionError(f"the test can only emulate pip commands, not {shlex.join(words)}")


def _map_abs(words: list[str], mapping: dict[str, Path]) -> list[str]:
    """Container paths (in plain or ``--opt=/path`` arguments) to their stand-ins."""

    def one(path: str) -> str:
        for prefix in sorted(mapping, key=len, reverse=True):
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return str(mapping[prefix]) + path[len(prefix.rstrip("/")) :]
        return path

    out = []
    for w in words:
        if w.startswith("--") and "=" in w:
            opt, _, value = w.partition("=")
            out.append(f"{opt}={one(value)}")
        else:
            out.append(one(w))
    return out


def _copy_from_context(ins: Instruction, workdir: Path, rules: list) -> None:
    """COPY src... dest from the repository (the build context), honouring .dockerignore."""
    *sources, dest = shlex.split(ins.rest)
    assert not dest.startswith("/"), "keep COPY destinations relative to WORKDIR"
    target = workdir / dest
    for src in sources:
        source = REPO / src
        assert not excluded(src, rules), f"COPY {src}: excluded by .dockerignore"
        assert source.exists(), f"COPY {src}: not in the build context"
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                rel = path.relative_to(REPO).as_posix()
                if path.is_file() and not excluded(rel, rules):
                    out = target / path.relative_to(source)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)
        else:
            out = target / source.name if dest.endswith("/") or len(sources) > 1 else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out)


def venv_site(venv: Path) -> Path:
    """The site-packages directory of a venv made by this interpreter."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / ver / "site-packages"
    assert site.is_dir(), site
    return site


def wheel_requirements(wheel: Path) -> list[tuple[str, str]]:
    """(name, environment marker) of each unconditional Requires-Dist of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
    out = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec, _, marker = line.split(":", 1)[1].partition(";")
        if "extra ==" in marker:
            continue  # optional extras ([test], [loadtest]) are not installed in the image
        name = re.match(r"\s*([A-Za-z0-9._-]+)", spec)
        assert name, line
        out.append((name.group(1), marker.strip()))
    return out


def dependency_dirs(wheel: Path) -> list[str]:
    """The site-packages directories of the running environment that hold the wheel's
    runtime requirements."""
    dirs: list[str] = []
    for name, marker in wheel_requirements(wheel):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            # Only a requirement whose marker excludes this platform may be missing.
            assert marker, f"{name} is required by the wheel but not installed here"
            continue
        where = str(Path(str(dist.locate_file(""))).resolve())
        if where not in dirs:
            dirs.append(where)
    assert dirs, "the wheel declares no runtime requirements"
    return dirs


# Run inside the stand-in venv: the runtime dependencies import, and the package is the
# wheel's copy in the venv, not the source tree or an editable install.
DEPS_IMPORT_CHECK = """
import sys
import aiofiles, httptools, server, uvloop
assert server.__file__.startswith(sys.prefix), server.__file__
"""


@dataclass
class Installed:
    venv: Path
    env: dict[str, str]  # the final stage's environment, PATH led by the venv's bin
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    healthcheck_timeout: float
    stop_signal: signal.Signals


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, stages: list[Stage]) -> Installed:
    """The image, outside Docker: the builder's steps run in a scratch root, the final
    stage's pip install goes into a fresh venv standing in for /usr/local."""
    base = tmp_path_factory.mktemp("image")
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    builder, final = stages[0], stages[-1]

    # Builder: WORKDIR, ENV, COPY and RUN pip, in order, with / at base/builder.
    root = base / "builder"
    workdir = root
    env = _clean_env()
    ran_pip = False
    for ins in builder.instructions:
        if ins.keyword == "WORKDIR":
            workdir = root / ins.rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "ENV":
            env.update(env_of(Stage("", None, [ins])))
        elif ins.keyword == "COPY":
            assert ins.flag("from") is None
            _copy_from_context(ins, workdir, rules)
        elif ins.keyword == "RUN":
            pip = _pip_argv(shlex.split(ins.rest))
            argv = _map_abs(pip, {"/": root})
            # The dependencies' wheels would come from PyPI: the host already has them (the
            # venv below sees them), so only our own wheel is built here.
            if argv[0] == "wheel" and "--no-deps" not in argv:
                argv.insert(1, "--no-deps")
            _run([sys.executable, "-m", "pip", *argv], workdir, env)
            ran_pip = True
    assert ran_pip, "the builder stage ran no pip command"
    assert list(root.rglob("zerocopy_server-*.whl")), "the builder made no wheel"

    # Final stage: a fresh venv stands in for /usr/local. The Dockerfile installs the
    # dependencies from the builder's wheels; here they come from the environment running
    # this test, whatever it is (a venv or the global interpreter), through a .pth file
    # naming the site-packages directories where the wheel's requirements are installed.
    # A .pth line only extends sys.path (the .pth files in those directories, such as an
    # editable install's finder, are not run), and the venv's own site-packages comes
    # first, so the wheel's copy of the package is what runs.
    wheel = next(root.rglob("zerocopy_server-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], base, _clean_env())
    (venv_site(venv) / "_zerocopy_test_deps.pth").write_text(
        "".join(f"{d}\n" for d in dependency_dirs(wheel))
    )
    final_env = {**_clean_env(), **env_of(final)}
    final_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    installs = 0
    for ins in final.all("RUN"):
        words = shlex.split(ins.rest)
        if words[0] in ("useradd", "groupadd", "adduser", "addgroup"):
            continue  # the user: the test runs the server as whoever runs pytest
        mapping: dict[str, Path] = {}
        mount = ins.flag("mount")
        if mount:
            opts = dict(kv.split("=", 1) for kv in mount.split(","))
            assert opts.get("from") == builder.name
            mapping[opts["target"]] = root / opts["source"].lstrip("/")
        pip = _map_abs(_pip_argv(words), mapping)
        assert pip[0] == "install"
        # --ignore-installed: the dependency directories may hold this project too (pip
        # install -e .), and the test must run the wheel's copy, not that one.
        argv = [str(venv / "bin" / "python"), "-m", "pip", *pip, "--no-deps", "--ignore-installed"]
        _run(argv, base, final_env)
        installs += 1
    assert installs == 1
    # The dependencies resolve from the venv, and nothing else of the host's leaks in.
    _run([str(venv / "bin" / "python"), "-c", DEPS_IMPORT_CHECK], base, final_env)

    entry, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    health = final.last("HEALTHCHECK")
    stop = final.last("STOPSIGNAL")
    assert entry and cmd and health and stop
    options, check = healthcheck_parts(health)
    name = stop.rest if stop.rest.startswith("SIG") or stop.rest.isdigit() else f"SIG{stop.rest}"
    return Installed(
        venv=venv,
        env=final_env,
        entrypoint=entry.exec_form() or [],
        cmd=cmd.exec_form() or [],
        healthcheck=check or [],
        healthcheck_timeout=seconds(options.get("timeout", "30s")),
        stop_signal=signal.Signals(int(name)) if name.isdigit() else signal.Signals[name],
    )


def _substitute(words: list[str], replacements: dict[str, str]) -> list[str]:
    """Container paths and ports in arguments to their stand-ins (``/srv`` and ``/srv/x``,
    ``8000`` as a whole argument or inside a URL)."""
    out = []
    for w in words:
        for old, new in replacements.items():
            if old.startswith("/"):
                if w == old or w.startswith(old + "/"):
                    w = new + w[len(old) :]
            elif w == old:
                w = new
            else:
                w = w.replace(f":{old}/", f":{new}/")
        out.append(w)
    return out


def _wait_serving(proc: subprocess.Popen[bytes], stdout: Path, timeout: float = 15) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = SERVING.search(stdout.read_text("utf-8", "replace"))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"no Serving line (exit {proc.poll()}): {stdout.read_text()}")


def _get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.OpenerDirector()  # no proxies, no redirects, no error raising
    opener.add_handler(urllib.request.HTTPHandler())
    with opener.open(url, timeout=5) as resp:
        return resp.status, resp.read()


@contextlib.contextmanager
def _running(cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Iterator[Any]:
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=o, stderr=e)
    try:
        yield proc, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_image_installs_serves_checks_health_and_stops(
    installed: Installed, tmp_path: Path
) -> None:
    srv = tmp_path / "srv"  # stands in for the /srv volume (and the WORKDIR)
    srv.mkdir()
    payload = os.urandom(300_000)  # above the inline limit: the sendfile path
    (srv / "data.bin").write_bytes(payload)
    (srv / "healthz").write_bytes(b"")  # the file the Kubernetes probes request

    # ENTRYPOINT + CMD as Docker runs them, found on PATH (the venv's bin for /usr/local/bin),
    # with /srv -> the scratch dir and port 8000 -> 0 (the port is read from the Serving line).
    argv = _substitute([*installed.entrypoint, *installed.cmd], {"/srv": str(srv), "8000": "0"})
    exe = shutil.which(argv[0], path=installed.env["PATH"])
    assert exe == str(installed.venv / "bin" / argv[0]), f"{argv[0]} resolves to {exe}"
    with _running([exe, *argv[1:]], srv, installed.env, tmp_path) as (proc, out, err):
        m = _wait_serving(proc, out)
        assert Path(m.group(1)).resolve() == srv.resolve()
        assert m.group(2) == "0.0.0.0"
        port = m.group(3)
        # The venv's copy of the package is what runs, not the source tree's.
        where = subprocess.run(
            [str(installed.venv / "bin" / "python"), "-c", "import server; print(server.__file__)"],
            cwd=tmp_path,
            env=installed.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert Path(where).is_relative_to(installed.venv), where

        status, body = _get(f"http://127.0.0.1:{port}/data.bin")
        assert status == 200 and body == payload
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        # An empty /srv (no index.html) answers / with 404: the health check must pass anyway.
        assert _get(f"http://127.0.0.1:{port}/")[0] == 404

        check = _substitute(installed.healthcheck, {"8000": port})
        assert check != installed.healthcheck, "the port in the HEALTHCHECK was not found"
        healthy = subprocess.run(
            check,
            env=installed.env,
            capture_output=True,
            text=True,
            timeout=installed.healthcheck_timeout + 5,
        )
        assert healthy.returncode == 0, healthy.stderr
        assert shutil.which(check[0], path=installed.env["PATH"]).startswith(str(installed.venv))

        started = time.monotonic()
        proc.send_signal(installed.stop_signal)
        assert proc.wait(timeout=10) == 0, err.read_text()
        assert time.monotonic() - started < 5
        assert "Traceback" not in err.read_text()

    # Nothing listens any more: unhealthy, with exit status 1 (2 is reserved by Docker).
    dead = subprocess.run(check, env=installed.env, capture_output=True, text=True, timeout=30)
    assert dead.returncode == 1, dead.stderr


def test_healthcheck_calls_5xx_unhealthy(installed: Installed) -> None:
    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = statuses.pop(0)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    stub = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=stub.serve_forever, daemon=True)
    thread.start()
    try:
        check = _substitute(installed.healthcheck, {"8000": str(stub.server_address[1])})
        for code, expected in ((503, 1), (500, 1), (404, 0), (301, 0), (200, 0)):
            statuses.append(code)
            done = subprocess.run(check, env=installed.env, capture_output=True, timeout=30)
            assert done.returncode == expected, (code, done.stderr)
    finally:
        stub.shutdown()
        stub.server_close()


# --- Kubernetes --------------------------------------------------------------------------


class YamlSubset:
    """Block mappings and sequences, plain and quoted scalars, flow sequences, comments and
    ``---``: enough for deploy/kubernetes.yaml (checked against PyYAML where installed)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def documents(self) -> list[Any]:
        docs, current = [], []
        for raw in self.text.splitlines():
            if raw.rstrip() == "---":
                docs.append(current)
                current = []
            else:
                current.append(raw)
        docs.append(current)
        return [self._document(lines) for lines in docs if self._lines(lines)]

    @staticmethod
    def _strip_comment(line: str) -> str:
        quote = None
        for i, c in enumerate(line):
            if quote:
                if c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "#" and (i == 0 or line[i - 1] in " \t"):
                return line[:i].rstrip()
        return line.rstrip()

    def _lines(self, raw_lines: list[str]) -> list[tuple[int, str]]:
        lines = []
        for raw in raw_lines:
            assert "\t" not in raw[: len(raw) - len(raw.lstrip())], "tabs in indentation"
            text = self._strip_comment(raw)
            if text.strip():
                lines.append((len(text) - len(text.lstrip()), text.strip()))
        return lines

    def _document(self, raw_lines: list[str]) -> Any:
        self.lines = self._lines(raw_lines)
        value, i = self._block(0, self.lines[0][0])
        assert i == len(self.lines), f"unparsed YAML from: {self.lines[i][1]!r}"
        return value

    def _block(self, i: int, indent: int) -> tuple[Any, int]:
        text = self.lines[i][1]
        if text == "-" or text.startswith("- "):
            return self._sequence(i, indent)
        return self._mapping(i, indent)

    def _sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        items = []
        while i < len(self.lines):
            col, text = self.lines[i]
            if col != indent or not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip()
            if not rest:
                value, i = self._block(i + 1, self.lines[i + 1][0])
            elif self._split_key(rest) is not None:
                # "- key: value": a mapping whose first line starts after the dash.
                self.lines[i] = (col + len(text) - len(rest), rest)
                value, i = self._mapping(i, self.lines[i][0])
            else:
                value, i = self._scalar(rest), i + 1
            items.append(value)
        return items, i

    def _mapping(self, i: int, indent: int) -> tuple[dict[str, Any], int]:
        mapping: dict[str, Any] = {}
        while i < len(self.lines):
            col, text = self.lines[i]
            if col != indent or text.startswith("- "):
                assert col <= indent, f"bad indentation at {text!r}"
                break
            split = self._split_key(text)
            assert split is not None, f"expected 'key: value', got {text!r}"
            key, rest = split
            assert key not in mapping, f"duplicate key {key}"
            i += 1
            if rest:
                mapping[key] = self._scalar(rest)
            elif i < len(self.lines) and self.lines[i][0] > indent:
                mapping[key], i = self._block(i, self.lines[i][0])
            elif (
                i < len(self.lines) and self.lines[i][0] == indent and self.lines[i][1][:2] == "- "
            ):
                mapping[key], i = self._sequence(i, indent)  # "key:\n- item" at one indent
            else:
                mapping[key] = None
        return mapping, i

    @staticmethod
    def _split_key(text: str) -> tuple[str, str] | None:
        if text[0] in "'\"[{":
            return None
        m = re.match(r"([^:#]+?):(?:\s+(.*))?$", text)
        if not m:
            return None
        return m.group(1), (m.group(2) or "").strip()

    def _scalar(self, text: str) -> Any:
        if text.startswith('"'):
            return json.loads(text)
        if text.startswith("'"):
            assert text.endswith("'")
            return text[1:-1].replace("''", "'")
        if text.startswith("["):
            assert text.endswith("]")
            inner = text[1:-1].strip()
            parts = re.findall(r"\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,]+)\s*(?:,|$)", inner)
            return [self._scalar(p.strip()) for p in parts]
        if text == "{}":
            return {}
        assert text[0] not in "{&*!|>", f"outside the YAML subset: {text!r}"
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if text in ("null", "~", "Null", "NULL"):
            return None
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", text):
            return float(text)
        return text


def test_yaml_subset_parser() -> None:
    text = (
        "# c\na: 1\nb:\n  - x\n  - name: n  # c\n    v: 'it''s'\n  -\n    deep: [1, \"a, b\"]\n"
        'c:\n- "q"\nd: {}\ne: true\nf: 250m\ng:\n---\nh: "1"\n'
    )
    assert YamlSubset(text).documents() == [
        {
            "a": 1,
            "b": ["x", {"name": "n", "v": "it's"}, {"deep": [1, "a, b"]}],
            "c": ["q"],
            "d": {},
            "e": True,
            "f": "250m",
            "g": None,
        },
        {"h": "1"},
    ]


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    docs = YamlSubset(K8S.read_text()).documents()
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs), "one object of each kind"
    return kinds


def test_yaml_subset_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml")
    text = K8S.read_text()
    assert YamlSubset(text).documents() == list(yaml.safe_load_all(text))


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    return named[port]


def test_kubernetes_deployment(k8s: dict[str, dict[str, Any]]) -> None:
    deploy = k8s["Deployment"]
    assert deploy["apiVersion"] == "apps/v1"
    spec = deploy["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    assert container["image"].endswith(":latest") or ":" in container["image"]
    assert [p["containerPort"] for p in container["ports"]] == [8000]

    # The server's options, through the server's own argument parser.
    args = build_parser().parse_args(container.get("args", []))
    assert (args.port if args.port is not None else args.port_arg) == 8000
    assert args.directory == "/srv"
    # preStop runs first, then SIGTERM: both must fit in the grace period.
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    slept = 0.0
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep"
        slept = float(command[1])
    elif "sleep" in pre_stop:
        slept = float(pre_stop["sleep"]["seconds"])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > slept + args.shutdown_timeout, (grace, slept, args.shutdown_timeout)

    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        get = probe["httpGet"]  # a real HTTP request, not tcpSocket or exec
        assert _container_port(container, get["port"]) == 8000
        assert get["path"].startswith("/")
    # The probe path is a file the operator must provide (Kubernetes fails on 404): the
    # deploy README must say so.
    path = container["readinessProbe"]["httpGet"]["path"]
    assert path.lstrip("/") in (DEPLOY / "README.md").read_text()

    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/srv"].get("readOnly") is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    volume = volumes[mounts["/srv"]["name"]]
    if "persistentVolumeClaim" in volume:
        assert volume["persistentVolumeClaim"]["claimName"]

    pod_sc = pod.get("securityContext", {})
    sc = container["securityContext"]
    assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True
    assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0)
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert "ALL" in sc.get("capabilities", {}).get("drop", [])


def test_kubernetes_service(k8s: dict[str, dict[str, Any]]) -> None:
    service, deploy = k8s["Service"], k8s["Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert _container_port(container, port["targetPort"]) == 8000
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


# --- systemd -----------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (keys may repeat), backslash continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "on", "1")


@pytest.fixture(scope="module")
def service() -> dict[str, dict[str, list[str]]]:
    return parse_unit(SERVICE.read_text())


@pytest.fixture(scope="module")
def socket_unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(SOCKET.read_text())


def _exec_start(service: dict[str, dict[str, list[str]]]) -> list[str]:
    (line,) = service["Service"]["ExecStart"]
    return shlex.split(line.lstrip("-@:+!"))


def test_systemd_service(service: dict[str, dict[str, list[str]]]) -> None:
    s = service["Service"]
    argv = _exec_start(service)
    assert Path(argv[0]).name == "zerocopy-server" and argv[0].startswith("/")
    args = build_parser().parse_args(argv[1:])
    # Socket-activated: the address comes from the .socket unit, never from ExecStart.
    assert args.port is None and args.port_arg is None and args.bind is None
    assert args.directory == "/srv/files"
    assert args.access_log == "on"

    assert s["Restart"] == ["on-failure"]
    assert s.get("KillSignal", ["SIGTERM"]) in (["SIGTERM"], ["TERM"], ["15"])
    # Only the main process is signalled: with --workers it forwards SIGTERM itself, and a
    # worker signalled twice stops draining.
    assert s["KillMode"] == ["mixed"]
    (stop_timeout,) = s["TimeoutStopSec"]
    assert seconds(stop_timeout) > args.shutdown_timeout

    (user,) = s["User"]
    assert user not in ("root", "0")
    assert _yes(s["NoNewPrivileges"][-1])
    assert s["ProtectSystem"] == ["strict"]
    assert _yes(s["ProtectHome"][-1]) or s["ProtectHome"] == ["read-only"]
    assert _yes(s["PrivateTmp"][-1])
    read_only = " ".join(s["ReadOnlyPaths"]).split()
    assert args.directory in [p.lstrip("-+") for p in read_only]
    assert "ReadWritePaths" not in s
    assert service["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_socket(socket_unit: dict[str, dict[str, list[str]]]) -> None:
    sock = socket_unit["Socket"]
    listens = sock["ListenStream"]
    assert listens and all(re.fullmatch(r"(.*:)?8000", v) for v in listens), listens
    assert not _yes(sock.get("Accept", ["no"])[-1]), "one server for all connections"
    # The socket activates the service of the same name (or the one it names).
    assert sock.get("Service", [SERVICE.name]) == [SERVICE.name]
    assert SOCKET.stem == SERVICE.stem
    assert socket_unit["Install"]["WantedBy"] == ["sockets.target"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: point it at one that does.
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    text = SERVICE.read_text().replace("/usr/local/bin/zerocopy-server", sys.executable)
    (tmp_path / SERVICE.name).write_text(text)
    done = subprocess.run(
        [tool, "verify", "--man=no", str(tmp_path / SOCKET.name), str(tmp_path / SERVICE.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zerocopy-server" not in done.stdout + done.stderr, done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_systemd_socket_activation(
    installed: Installed,
    service: dict[str, dict[str, list[str]]],
    socket_unit: dict[str, dict[str, list[str]]],
    tmp_path: Path,
) -> None:
    """The .service's ExecStart under systemd-socket-activate with the .socket's address
    (its port swapped for a free one on loopback): systemd hands over the socket."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    files = tmp_path / "files"
    files.mkdir()
    payload = os.urandom(100_000)
    (files / "f.bin").write_bytes(payload)
    argv = _exec_start(service)
    argv = [str(installed.venv / "bin" / "zerocopy-server"), *argv[1:]]
    argv = _substitute(argv, {"/srv/files": str(files)})
    port = _free_port()
    (listen,) = socket_unit["Socket"]["ListenStream"]
    address = re.sub(r"^(.*:)?8000$", f"127.0.0.1:{port}", listen)
    cmd = [activate, "--listen", address, *argv]
    with _running(cmd, tmp_path, installed.env, tmp_path) as (proc, out, err):
        # The first connection starts the server (it waits in the backlog meanwhile).
        deadline = time.monotonic() + 15
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/f.bin")
                break
            except (ConnectionRefusedError, urllib.error.URLError):
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
        assert status == 200 and body == payload
        _wait_serving(proc, out)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, err.read_text()
