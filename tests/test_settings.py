"""Settings from the environment (``ZEROCOPY_<OPTION>``), their precedence, --help as a
snapshot, --version, --check-config, and the startup line.

The --help snapshot is tests/snapshots/help.txt. After a deliberate change to the help,
rewrite it and review the diff:

    UPDATE_SNAPSHOTS=1 python -m pytest tests/test_settings.py -k help
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from loadtest import servers as loadtest_servers
from server.config import Config
from server.process import settings
from server.process.cli import build_parser, config_from_args, features_on, serving_line

from .serverproc import _SERVING as SERVERPROC_SERVING
from .serverproc import REPO, ServerProcess

SNAPSHOT = Path(__file__).parent / "snapshots" / "help.txt"
# How the load-test harness reads the port from the startup line: it must keep working.
LOADTEST_SERVING = loadtest_servers._SERVING


def parse(argv: list[str], env: dict[str, str] | None = None):
    parser = build_parser()
    args, sources = settings.parse(parser, argv, env or {})
    return args, sources, config_from_args(args)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(settings.ENV_PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- every option's environment variable ------------------------------------------------

# The expected name of every setting's variable, by long option. The names are derived
# from the options (server/process/settings.py); this table is the check that the
# derivation gives what the README documents, and that no option lacks one.
ENV_NAMES = {
    "--port": "ZEROCOPY_PORT",
    "--bind": "ZEROCOPY_BIND",
    "--unix": "ZEROCOPY_UNIX",
    "--unix-mode": "ZEROCOPY_UNIX_MODE",
    "--workers": "ZEROCOPY_WORKERS",
    "--loop": "ZEROCOPY_LOOP",
    "--directory": "ZEROCOPY_DIRECTORY",
    "--dotfiles": "ZEROCOPY_DOTFILES",
    "--autoindex": "ZEROCOPY_AUTOINDEX",
    "--precompressed": "ZEROCOPY_PRECOMPRESSED",
    "--attachment": "ZEROCOPY_ATTACHMENT",
    "--digest": "ZEROCOPY_DIGEST",
    "--archives": "ZEROCOPY_ARCHIVES",
    "--archive-max-files": "ZEROCOPY_ARCHIVE_MAX_FILES",
    "--archive-max-bytes": "ZEROCOPY_ARCHIVE_MAX_BYTES",
    "--mirror": "ZEROCOPY_MIRROR",
    "--cache-control": "ZEROCOPY_CACHE_CONTROL",
    "--cors": "ZEROCOPY_CORS",
    "--no-sendfile": "ZEROCOPY_NO_SENDFILE",
    "--inline-max": "ZEROCOPY_INLINE_MAX",
    "--no-cache": "ZEROCOPY_NO_CACHE",
    "--header-timeout": "ZEROCOPY_HEADER_TIMEOUT",
    "--keepalive-timeout": "ZEROCOPY_KEEPALIVE_TIMEOUT",
    "--send-timeout": "ZEROCOPY_SEND_TIMEOUT",
    "--shutdown-timeout": "ZEROCOPY_SHUTDOWN_TIMEOUT",
    "--max-connections": "ZEROCOPY_MAX_CONNECTIONS",
    "--max-connections-per-ip": "ZEROCOPY_MAX_CONNECTIONS_PER_IP",
    "--limit-rate": "ZEROCOPY_LIMIT_RATE",
    "--limit-rate-after": "ZEROCOPY_LIMIT_RATE_AFTER",
    "--forwarded-allow-ips": "ZEROCOPY_FORWARDED_ALLOW_IPS",
    "--root-path": "ZEROCOPY_ROOT_PATH",
    "--certfile": "ZEROCOPY_CERTFILE",
    "--keyfile": "ZEROCOPY_KEYFILE",
    "--access-log": "ZEROCOPY_ACCESS_LOG",
    "--access-log-format": "ZEROCOPY_ACCESS_LOG_FORMAT",
    "--access-log-file": "ZEROCOPY_ACCESS_LOG_FILE",
    "--log-level": "ZEROCOPY_LOG_LEVEL",
    "--metrics": "ZEROCOPY_METRICS",
}

# One value per setting, as the environment gives it, and what it must become.
ENV_VALUES = {
    "--port": ("8080", "port", 8080),
    "--bind": ("127.0.0.1", "host", "127.0.0.1"),
    "--unix": ("/run/z.sock", "unix", "/run/z.sock"),
    "--unix-mode": ("600", "unix_mode", 0o600),
    "--workers": ("3", "workers", 3),
    "--loop": ("asyncio", "loop", "asyncio"),
    "--directory": ("/tmp", "root", "/tmp"),
    "--dotfiles": ("allow", "allow_dotfiles", True),
    "--autoindex": ("yes", "autoindex", True),
    "--precompressed": ("br,gzip", "precompressed", ("br", "gzip")),
    "--attachment": ("1", "attachment", True),
    "--digest": ("sha-256", "digest", True),
    "--archives": ("tar,zip", "archives", ("tar", "zip")),
    "--archive-max-files": ("7", "archive_max_files", 7),
    "--archive-max-bytes": ("2m", "archive_max_bytes", 2 * 1024**2),
    "--mirror": (
        "https://a.example/ 'https://b.example/;pri=3'",
        "mirrors",
        ("https://a.example/", "https://b.example/;pri=3"),
    ),
    "--cache-control": (
        "'*.iso=public, max-age=60' 'no-cache'",
        "cache_control",
        ("*.iso=public, max-age=60", "no-cache"),
    ),
    "--cors": ("*", "cors", ("*",)),
    "--no-sendfile": ("true", "sendfile", False),
    "--inline-max": ("1000", "inline_max", 1000),
    "--no-cache": ("on", "cache", False),
    "--header-timeout": ("2.5", "header_timeout", 2.5),
    "--keepalive-timeout": ("3", "keepalive_timeout", 3.0),
    "--send-timeout": ("4", "send_timeout", 4.0),
    "--shutdown-timeout": ("6", "shutdown_timeout", 6.0),
    "--max-connections": ("5", "max_connections", 5),
    "--max-connections-per-ip": ("9", "max_connections_per_ip", 9),
    "--limit-rate": ("500k", "limit_rate", 500 * 1024),
    "--limit-rate-after": ("1m", "limit_rate_after", 1024**2),
    "--forwarded-allow-ips": ("10.0.0.0/8", "forwarded_allow_ips", "10.0.0.0/8"),
    "--root-path": ("/files", "root_path", "/files"),
    "--certfile": ("/c.pem", "certfile", "/c.pem"),
    "--keyfile": ("/k.pem", "keyfile", "/k.pem"),
    "--access-log": ("off", "access_log", False),
    "--access-log-format": ("json", "access_log_format", "json"),
    "--access-log-file": ("/tmp/a.log", "access_log_file", "/tmp/a.log"),
    "--log-level": ("debug", "log_level", "debug"),
    "--metrics": ("127.0.0.1:9100", "metrics", "127.0.0.1:9100"),
}


def test_every_option_has_an_environment_variable() -> None:
    parser = build_parser()
    options = {settings.long_name(a) for a in parser._actions if a.option_strings}
    commands = {"--help", "--version", "--check-config"}
    derived = {settings.long_name(a): name for a, name in settings.settings(parser)}
    assert set(derived) == options - commands
    assert derived == ENV_NAMES
    assert set(ENV_VALUES) == set(ENV_NAMES)
    assert len(set(derived.values())) == len(derived)


@pytest.mark.parametrize("option", sorted(ENV_NAMES))
def test_each_variable_sets_its_option(option: str) -> None:
    text, field, expected = ENV_VALUES[option]
    _, sources, config = parse([], {ENV_NAMES[option]: text})
    assert getattr(config, field) == expected
    dest = option[2:].replace("-", "_")
    assert sources[dest] == settings.ENVIRONMENT
    assert [d for d, s in sources.items() if s != settings.DEFAULT] == [dest]


def test_no_environment_gives_configs_defaults() -> None:
    _, sources, config = parse([])
    assert config == Config(root=os.path.abspath(Config().root))
    assert set(sources.values()) == {settings.DEFAULT}


# --- precedence: command line, then environment, then default ---------------------------

PRECEDENCE = [
    # argv, environment, Config field, expected value, source of the option
    ([], {}, "port", 8000, "default"),
    ([], {"ZEROCOPY_PORT": "8080"}, "port", 8080, "environment"),
    (["-p", "9090"], {"ZEROCOPY_PORT": "8080"}, "port", 9090, "command line"),
    (["--port", "9090"], {"ZEROCOPY_PORT": "8080"}, "port", 9090, "command line"),
    (["9191"], {"ZEROCOPY_PORT": "8080"}, "port", 9191, "command line"),  # positional
    (["9191"], {}, "port", 9191, "command line"),
    ([], {"ZEROCOPY_PORT": ""}, "port", 8000, "default"),  # empty = unset
    ([], {"ZEROCOPY_PORT": "  "}, "port", 8000, "default"),
    ([], {"ZEROCOPY_AUTOINDEX": "0"}, "autoindex", False, "environment"),
    (["--autoindex"], {"ZEROCOPY_AUTOINDEX": "no"}, "autoindex", True, "command line"),
    ([], {"ZEROCOPY_NO_CACHE": "TRUE"}, "cache", False, "environment"),
    ([], {"ZEROCOPY_ACCESS_LOG_FORMAT": "json"}, "access_log_format", "json", "environment"),
    (
        ["--access-log-format", "combined"],
        {"ZEROCOPY_ACCESS_LOG_FORMAT": "json"},
        "access_log_format",
        "combined",
        "command line",
    ),
    ([], {"ZEROCOPY_WORKERS": "4"}, "workers", 4, "environment"),
    (["--workers", "2"], {"ZEROCOPY_WORKERS": "4"}, "workers", 2, "command line"),
    (
        [],
        {"ZEROCOPY_MIRROR": "https://a/ https://b/"},
        "mirrors",
        ("https://a/", "https://b/"),
        "environment",
    ),
    # A repeatable option on the command line replaces the environment's list, whole.
    (
        ["--mirror", "https://c/"],
        {"ZEROCOPY_MIRROR": "https://a/ https://b/"},
        "mirrors",
        ("https://c/",),
        "command line",
    ),
    ([], {"ZEROCOPY_DIRECTORY": "/tmp"}, "root", "/tmp", "environment"),
    (["-d", "/var"], {"ZEROCOPY_DIRECTORY": "/tmp"}, "root", "/var", "command line"),
    ([], {"ZEROCOPY_SEND_TIMEOUT": "1.5"}, "send_timeout", 1.5, "environment"),
    ([], {"ZEROCOPY_DOTFILES": "allow"}, "allow_dotfiles", True, "environment"),
]


@pytest.mark.parametrize(("argv", "env", "field", "expected", "source"), PRECEDENCE)
def test_precedence(argv, env, field, expected, source) -> None:
    _, sources, config = parse(argv, env)
    assert getattr(config, field) == expected
    option = {"root": "directory", "mirrors": "mirror", "cache": "no_cache"}.get(field, field)
    option = {"allow_dotfiles": "dotfiles"}.get(option, option)
    assert sources[option] == source


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("1", "true", "True", "YES", "on", " on ")]
    + [(t, False) for t in ("0", "false", "no", "Off")],
)
def test_flags_from_the_environment(text: str, value: bool) -> None:
    _, _, config = parse([], {"ZEROCOPY_AUTOINDEX": text})
    assert config.autoindex is value


BAD_ENV = [
    ("ZEROCOPY_PORT", "70000"),
    ("ZEROCOPY_PORT", "http"),
    ("ZEROCOPY_AUTOINDEX", "maybe"),
    ("ZEROCOPY_AUTOINDEX", "2"),
    ("ZEROCOPY_ACCESS_LOG_FORMAT", "xml"),
    ("ZEROCOPY_WORKERS", "0"),
    ("ZEROCOPY_SEND_TIMEOUT", "-1"),
    ("ZEROCOPY_UNIX_MODE", "999"),
    ("ZEROCOPY_ARCHIVES", "rar"),
    ("ZEROCOPY_MIRROR", "https://a/ 'unclosed"),
    ("ZEROCOPY_MIRROR", "ftp://a/"),
    ("ZEROCOPY_ROOT_PATH", "/../x"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ENV)
def test_bad_environment_value_is_a_usage_error_naming_the_variable(name, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse([], {name: value})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: environment variable {name}=" in err


def test_bad_environment_value_exits_2_without_a_traceback() -> None:
    done = run_cli("--check-config", env={"ZEROCOPY_PORT": "70000"})
    assert done.returncode == 2
    assert "ZEROCOPY_PORT" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("-p", "0", env={"ZEROCOPY_NO_CACHE": "perhaps"})
    assert done.returncode == 2
    assert "ZEROCOPY_NO_CACHE" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_variable_is_ignored_when_the_command_line_sets_its_option() -> None:
    _, sources, config = parse(["-p", "1234"], {"ZEROCOPY_PORT": "bad"})
    assert config.port == 1234 and sources["port"] == settings.COMMAND_LINE


# --- --help -----------------------------------------------------------------------------


def _help(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    return build_parser().format_help()


def test_help_matches_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to --help must be deliberate: rerun with UPDATE_SNAPSHOTS=1, review the
    diff of tests/snapshots/help.txt, commit both."""
    text = _help(monkeypatch)
    header = (
        f"# zerocopy-server --help, COLUMNS=100, Python {sys.version_info[0]}."
        f"{sys.version_info[1]}; to accept a change: UPDATE_SNAPSHOTS=1 pytest "
        "tests/test_settings.py -k help\n"
    )
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(header + text)
    stored = SNAPSHOT.read_text()
    recorded = stored.partition("\n")[0] + "\n"
    if recorded != header:
        # argparse's layout changes between Python versions (3.13: "-p, --port PORT").
        pytest.skip(f"snapshot recorded with {recorded.strip()!r}, not {header.strip()!r}")
    assert header + text == stored, "--help changed: UPDATE_SNAPSHOTS=1 to accept it"


def test_help_groups_in_order_and_every_line_shows_its_default(monkeypatch) -> None:
    text = _help(monkeypatch)
    groups = [
        "Listening:",
        "Files:",
        "Limits and timeouts:",
        "Proxies and TLS:",
        "Logging and metrics:",
        "examples:",
        "environment:",
    ]
    where = [text.index(f"\n{g}\n") for g in groups]
    assert where == sorted(where)
    for action, _ in settings.settings(build_parser()):
        assert "(default" in (action.help or ""), action.option_strings
    # The environment is explained once, in its own paragraph, not on every line.
    assert text.count("ZEROCOPY_<OPTION>") == 1
    assert text.count("ZEROCOPY_") < 10


def test_help_examples_parse() -> None:
    """The epilog's example command lines are valid."""
    parser = build_parser()
    lines = parser.epilog.replace("\\\n", " ").splitlines()
    commands = [shlex.split(ln)[1:] for ln in lines if ln.strip().startswith("zerocopy-server")]
    assert len(commands) == 2
    for argv in commands:
        parser.parse_args(argv)


def test_readme_usage_table_names_every_variable() -> None:
    readme = (REPO / "README.md").read_text()
    usage = readme[readme.index("## Usage") : readme.index("## Behaviour")]
    table = [ln for ln in usage.splitlines() if ln.startswith("| `")]
    for option, name in ENV_NAMES.items():
        (row,) = [ln for ln in table if re.search(rf"`(?:-\w/)?{option}`", ln)]
        assert f"`{name}`" in row, option


# --- --version --------------------------------------------------------------------------


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"zerocopy-server {metadata.version('zerocopy-server')}"
    assert lines[1] == f"uvloop {metadata.version('uvloop')}"
    assert lines[2] == f"httptools {metadata.version('httptools')}"
    assert lines[3].endswith(
        f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]} on {sys.platform}"
    )


# --- --check-config ---------------------------------------------------------------------


def _lines(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        name, value, source = re.fullmatch(
            r"(\S+)\s+(.*?)\s+((?:command line|default|environment).*)", line
        ).groups()
        rows[name] = (value, source)
    return rows


def test_check_config_prints_each_setting_with_its_source(tmp_path: Path) -> None:
    done = run_cli(
        "--check-config",
        "-d",
        str(tmp_path),
        "--autoindex",
        env={"ZEROCOPY_PORT": "8123", "ZEROCOPY_MIRROR": "https://a/ https://b/"},
    )
    assert done.returncode == 0, done.stderr
    rows = _lines(done.stdout)
    assert set(rows) == set(ENV_NAMES)
    assert rows["--port"] == ("8123", "environment (ZEROCOPY_PORT)")
    assert rows["--directory"] == (str(tmp_path), "command line")
    assert rows["--autoindex"] == ("on", "command line")
    assert rows["--mirror"] == ("https://a/ https://b/", "environment (ZEROCOPY_MIRROR)")
    assert rows["--loop"] == ("auto", "default")
    assert rows["--unix-mode"] == ("0660", "default")


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        ([], {}, 0, ""),
        (["--workers", "auto", "--digest", "sha-256"], {"ZEROCOPY_AUTOINDEX": "1"}, 0, ""),
        (["-d", "{missing}"], {}, 2, "does not exist"),
        ([], {"ZEROCOPY_DIRECTORY": "{missing}"}, 2, "does not exist"),
        (["-d", "{file}"], {}, 2, "is not a directory"),
        (["--keyfile", "/k.pem"], {}, 2, "--keyfile needs --certfile"),
        (["--certfile", "{missing}"], {}, 2, "cannot load the TLS certificate"),
        (["--metrics", "nope"], {}, 2, "--metrics"),
        (["--forwarded-allow-ips", "not-an-ip"], {}, 2, "--forwarded-allow-ips"),
        (["--port", "http"], {}, 2, "invalid port"),
        ([], {"ZEROCOPY_LOG_LEVEL": "loud"}, 2, "ZEROCOPY_LOG_LEVEL"),
    ],
)
def test_check_config_exit_codes(tmp_path: Path, argv, env, code, message) -> None:
    (tmp_path / "file").write_text("x")
    paths = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "file")}
    argv = [a.format(**paths) for a in argv]
    env = {k: v.format(**paths) for k, v in env.items()}
    if "-d" not in argv:
        env.setdefault("ZEROCOPY_DIRECTORY", str(tmp_path))
    done = run_cli("--check-config", *argv, env=env)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_does_not_listen(tmp_path: Path) -> None:
    """On a port that is taken, serving would exit 1; the check exits 0, binding nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run_cli("--check-config", "-b", "127.0.0.1", "-p", port, "-d", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert "Serving" not in done.stdout
        served = run_cli("-b", "127.0.0.1", "-p", port, "-d", str(tmp_path))
        assert served.returncode == 1


def test_check_config_warns_of_unknown_variables(tmp_path: Path) -> None:
    done = run_cli("--check-config", "-d", str(tmp_path), env={"ZEROCOPY_PROT": "1"})
    assert done.returncode == 0
    assert "ZEROCOPY_PROT is not a setting" in done.stderr


# --- the startup line -------------------------------------------------------------------


def _socket(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family)
    sock.bind((host, 0))
    return sock


def test_startup_line_names_workers_send_path_features_and_ends_with_the_url() -> None:
    config = Config(root="/srv", workers=4, autoindex=True, archives=("tar", "zip"))
    with _socket(socket.AF_INET, "127.0.0.1") as sock:
        port = sock.getsockname()[1]
        line = serving_line(config, [sock], "sendfile")
    assert line == (
        "Serving /srv (4 workers, send path sendfile, features: autoindex, archives=tar,zip, "
        f"access-log=combined) at http://127.0.0.1:{port}/"
    )
    assert int(LOADTEST_SERVING.search(line).group(1)) == port
    assert int(SERVERPROC_SERVING.search(line).group(3)) == port


def test_startup_line_with_two_sockets_keeps_a_url_last() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with _socket(socket.AF_INET, "127.0.0.1") as v4:
        port = v4.getsockname()[1]
        try:
            v6 = _socket(socket.AF_INET6, "::1")
        except OSError:
            pytest.skip("no IPv6 loopback")
        with v6:
            line = serving_line(Config(root="/srv", access_log=False), [v4, v6], "buffered")
    assert line.startswith("Serving /srv (1 worker, send path buffered, features: none) at ")
    assert f" at http://127.0.0.1:{port}/ and at http://[::1]:" in line
    assert LOADTEST_SERVING.search(line) and SERVERPROC_SERVING.search(line)


def test_features_on_are_named() -> None:
    assert features_on(Config(access_log=False)) == []
    config = Config(
        certfile="/c.pem",
        precompressed=("br",),
        digest=True,
        attachment=True,
        mirrors=("https://a/",),
        cache_control=("no-cache",),
        cors=("*",),
        limit_rate=512 * 1024,
        max_connections_per_ip=8,
        metrics="127.0.0.1:9100",
        allow_dotfiles=True,
        root_path="/files",
        access_log_format="json",
    )
    assert features_on(config) == [
        "tls",
        "precompressed=br",
        "digest=sha-256",
        "attachment",
        "mirrors=1",
        "cache-control",
        "cors",
        "limit-rate=512k/s",
        "max-connections-per-ip=8",
        "metrics=127.0.0.1:9100",
        "dotfiles",
        "root-path=/files",
        "access-log=json",
    ]


def test_server_started_from_the_environment(tree, monkeypatch) -> None:
    """A real server configured by ZEROCOPY_* variables: the startup line shows them, and
    the harness's regexes read its port."""
    monkeypatch.setenv("ZEROCOPY_AUTOINDEX", "1")
    monkeypatch.setenv("ZEROCOPY_DIGEST", "sha-256")
    with ServerProcess(tree.root, logdir=tree.base / "logs") as srv:
        out = srv.stdout()
        assert "features: autoindex, digest=sha-256" in out
        assert int(LOADTEST_SERVING.search(out).group(1)) == srv.port


# --- the deploy files' pre-start checks -------------------------------------------------


def test_kubernetes_init_container_checks_the_servers_options() -> None:
    from .test_deploy_files import K8S, YamlSubset

    (deploy,) = [d for d in YamlSubset(K8S.read_text()).documents() if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    (check,) = pod["initContainers"]
    assert check["image"] == server["image"]
    assert check["args"] == ["--check-config", *server["args"]]
    assert check["volumeMounts"] == server["volumeMounts"]
    build_parser().parse_args(check["args"])


def test_systemd_unit_checks_the_servers_options() -> None:
    from .test_deploy_files import SERVICE, parse_unit

    unit = parse_unit(SERVICE.read_text())["Service"]
    (pre,) = unit["ExecStartPre"]
    (start,) = unit["ExecStart"]
    pre_argv, start_argv = shlex.split(pre), shlex.split(start)
    assert pre_argv == [start_argv[0], "--check-config", *start_argv[1:]]


def test_dockerfile_shows_the_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "--check-config" in text and "ZEROCOPY_" in text
