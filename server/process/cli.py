"""The command line: a drop-in for ``python -m http.server`` with a few more options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import math
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..config import Config
from ..http.cachecontrol import parse_rule
from ..http.cors import parse_origins
from ..http.encodings import parse_precompressed
from ..http.forwarded import TrustedPeers
from ..http.metalink import parse_mirror
from . import settings
from .app import choose_send_path, serve, tls_context
from .listen import UnixSocketInUse, bind_tcp, bind_unix, describe, inherited_sockets
from .metrics import parse_address
from .supervisor import Supervisor

EXIT_USAGE = 2
# Every default of the command line is Config's: this instance is the one place read.
DEFAULT = Config()


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _parsed(text: str, convert: type, what: str, ok: Callable[[Any], bool], rule: str) -> Any:
    """``convert(text)``, or an argparse error naming ``what`` or the ``rule`` broken."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(rule)
    return value


def _port(text: str) -> int:
    return _parsed(text, int, "port", lambda v: 0 <= v <= 65535, f"port {text} is outside 0-65535")


def _size(text: str) -> int:
    return _parsed(text, int, "size", lambda v: v >= 0, "size must be >= 0")


def _seconds(text: str) -> float:
    return _parsed(
        text,
        float,
        "number of seconds",
        lambda v: 0 < v < float("inf"),
        "seconds must be a positive number",
    )


def _count(text: str) -> int:
    return _parsed(text, int, "count", lambda v: v >= 1, "must be at least 1")


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a container's
    limit), so ``--workers auto`` in a 1-CPU pod on a 64-core node starts one worker."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of quota from cgroup v2 cpu.max or v1 cpu.cfs_quota_us, or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _precompressed(text: str) -> tuple[str, ...]:
    try:
        return parse_precompressed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _rate(text: str) -> int:
    """``500k``, ``2m``, ``1048576``: bytes (binary multiples)."""
    number, unit = text.strip().lower(), ""
    if number and number[-1] in "kmg":
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _binary(size: int) -> str:
    """``256g`` for 256 GiB: a size as --archive-max-bytes and --limit-rate take it."""
    for unit in "gmk":
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def _cache_control(text: str) -> str:
    try:
        parse_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cors(text: str) -> tuple[str, ...]:
    try:
        return parse_origins(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _archives(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    if text.strip().lower() in ("off", "none", ""):
        return ()
    unknown = [k for k in kinds if k not in ("tar", "zip")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown archive kind {unknown[0]!r}: tar, zip")
    return kinds


def _mirror(text: str) -> str:
    try:
        parse_mirror(text, 2)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _workers(text: str) -> int:
    if text == "auto":
        return available_cpus()
    return _count(text)


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid octal mode {text!r}") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError("mode must be between 000 and 777")
    return value


def _root_path(text: str) -> str:
    """The mount prefix in the form clients send it: non-ASCII percent-encoded (UTF-8),
    escapes already there kept, so ``/fichiers-é`` and ``/fichiers-%C3%A9`` are one."""
    path = "/" + text.strip("/")
    if path == "/":
        return ""
    segments = path.split("/")
    if any(seg in (".", "..") for seg in segments) or "?" in path or "#" in path:
        raise argparse.ArgumentTypeError(f"invalid root path {text!r}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise argparse.ArgumentTypeError(f"root path {text!r} has spaces or control characters")
    encoded = quote(path, safe="/%!$&'()*+,;=:@-._~")
    if re.search(r"%(?![0-9A-Fa-f]{2})", encoded):
        raise argparse.ArgumentTypeError(f"root path {text!r} has an invalid %-escape")
    return encoded


EPILOG = """\
examples:
  A public download mirror: listings, checksums, whole-directory downloads, every CPU:
    zerocopy-server --port 80 --directory /srv/mirror --workers auto --autoindex \\
        --digest sha-256 --archives tar,zip --precompressed br,gzip \\
        --cache-control '*.iso=public, max-age=31536000, immutable' \\
        --access-log-format json

  Behind nginx on a unix socket, mounted at /files/ (deploy/nginx.conf):
    zerocopy-server --unix /run/zerocopy-server.sock --unix-mode 0660 \\
        --root-path /files --directory /srv/files

  In a container, configured from the environment, checked before it starts:
    docker run --rm -v "$PWD/files:/srv:ro" -e ZEROCOPY_WORKERS=2 \\
        zerocopy-server --check-config --directory /srv
    docker run -p 8000:8000 -v "$PWD/files:/srv:ro" -e ZEROCOPY_WORKERS=2 \\
        -e ZEROCOPY_ACCESS_LOG_FORMAT=json zerocopy-server

environment:
  Every option can also be set as ZEROCOPY_<OPTION>, its long name upper-cased with
  dashes as underscores: ZEROCOPY_PORT=8080, ZEROCOPY_ACCESS_LOG_FORMAT=json. Flags take
  1/0, true/false, yes/no or on/off; repeatable options take several values, split as a
  shell would (ZEROCOPY_MIRROR="https://a.example/ https://b.example/"); an empty
  variable counts as unset. The command line wins over the environment, the environment
  over the default; --check-config shows where each value came from.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerocopy-server",
        description="Serve a directory over HTTP/1.1, sending files with kernel sendfile.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--version",
        action=settings.VersionAction,
        help="print the versions of zerocopy-server, uvloop, httptools and Python, and exit",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the options and the directory, print the effective configuration "
        "and where each value came from, and exit (0: valid, 2: not) without listening",
    )
    _listening(p.add_argument_group("Listening"))
    _files(p.add_argument_group("Files"))
    _limits(p.add_argument_group("Limits and timeouts"))
    _proxies(p.add_argument_group("Proxies and TLS"))
    _logging(p.add_argument_group("Logging and metrics"))
    return p


def _listening(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "port_arg",
        nargs="?",
        type=_port,
        metavar="PORT",
        help=f"port to listen on (default: {DEFAULT.port})",
    )
    g.add_argument(
        "-p",
        "--port",
        type=_port,
        help=f"port to listen on, overrides PORT; 0 picks a free one (default: {DEFAULT.port})",
    )
    g.add_argument("-b", "--bind", metavar="ADDR", help="address to bind (default: all interfaces)")
    g.add_argument(
        "--unix",
        metavar="PATH",
        help="listen on a unix domain socket at PATH instead of TCP (default: off)",
    )
    g.add_argument(
        "--unix-mode",
        type=_mode,
        default=DEFAULT.unix_mode,
        metavar="OCTAL",
        help=f"permissions of the unix socket file (default: {DEFAULT.unix_mode:04o})",
    )
    g.add_argument(
        "--workers",
        type=_workers,
        default=DEFAULT.workers,
        metavar="N",
        help="worker processes sharing the listening sockets; 'auto' = the CPUs this "
        "process may use (default: %(default)s)",
    )
    g.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default=DEFAULT.loop,
        help="event loop (default: %(default)s, uvloop when importable)",
    )


def _files(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "-d",
        "--directory",
        default=DEFAULT.root,
        help="directory to serve (default: the current directory)",
    )
    g.add_argument(
        "--dotfiles",
        choices=("deny", "allow"),
        default="allow" if DEFAULT.allow_dotfiles else "deny",
        help="serve dotfiles and dot-directories (deny: 404) (default: %(default)s)",
    )
    g.add_argument(
        "--autoindex",
        action="store_true",
        help="list directories that have no index.html (HTML, or JSON with ?format=json) "
        "(default: off)",
    )
    g.add_argument(
        "--precompressed",
        type=_precompressed,
        default=DEFAULT.precompressed,
        metavar="LIST",
        help="serve file.br/.zst/.gz variants to clients that accept them: codings in "
        "order of preference (e.g. br,zstd,gzip) or 'off' (default: off)",
    )
    g.add_argument(
        "--attachment",
        action="store_true",
        help="send every file as a download (Content-Disposition: attachment); without "
        "it, ?download does so per request (default: off)",
    )
    g.add_argument(
        "--digest",
        choices=("sha-256", "off"),
        default="sha-256" if DEFAULT.digest else "off",
        help="send Repr-Digest (RFC 9530) with files (default: %(default)s)",
    )
    g.add_argument(
        "--archives",
        type=_archives,
        default=DEFAULT.archives,
        metavar="tar,zip",
        help="offer directories as one download: GET /dir/?archive=tar (or zip); "
        "resumable, with Range (default: off)",
    )
    g.add_argument(
        "--archive-max-files",
        type=_count,
        default=DEFAULT.archive_max_files,
        metavar="N",
        help="an archive of more files is refused with 413 (default: %(default)s)",
    )
    g.add_argument(
        "--archive-max-bytes",
        type=_rate,
        default=DEFAULT.archive_max_bytes,
        metavar="BYTES",
        help="an archive of more bytes is refused with 413 (k/m/g suffixes) (default: "
        f"{_binary(DEFAULT.archive_max_bytes)})",
    )
    g.add_argument(
        "--mirror",
        type=_mirror,
        action="append",
        default=None,
        metavar="BASE_URL[;pri=N]",
        help="a mirror of the served tree (repeatable): file responses get Metalink/HTTP "
        "Link fields (RFC 6249), NAME.meta4 a Metalink 4 document (RFC 5854) "
        "(default: none)",
    )
    g.add_argument(
        "--cache-control",
        type=_cache_control,
        action="append",
        default=None,
        metavar="[GLOB=]VALUE",
        help="Cache-Control for files on 200/206/304: 'GLOB=VALUE' for files whose name (or "
        "path, if GLOB has a /) matches, or VALUE for the rest; repeatable, first match wins "
        "(e.g. '*.iso=public, max-age=31536000, immutable' 'public, max-age=300') "
        "(default: none)",
    )
    g.add_argument(
        "--cors",
        type=_cors,
        default=DEFAULT.cors,
        metavar="ORIGIN[,ORIGIN]|*",
        help="let pages of these origins read files with fetch(), Range included "
        "(CORS); '*' for any origin (default: none)",
    )
    g.add_argument(
        "--no-sendfile",
        action="store_true",
        help="send file bodies with read/write instead of sendfile (default: off)",
    )
    g.add_argument(
        "--inline-max",
        type=_size,
        default=DEFAULT.inline_max,
        metavar="BYTES",
        help="bodies up to this size are sent in one write with the head (default: %(default)s)",
    )
    g.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep small files' responses in memory (each request opens and reads "
        "its file) (default: off)",
    )


def _limits(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT.header_timeout,
        metavar="S",
        help="close a connection whose request head is not complete S seconds "
        "after its first byte (default: %(default)g)",
    )
    g.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        default=DEFAULT.keepalive_timeout,
        metavar="S",
        help="close an idle keep-alive connection after S seconds (default: %(default)g)",
    )
    g.add_argument(
        "--send-timeout",
        type=_seconds,
        default=DEFAULT.send_timeout,
        metavar="S",
        help="abort a response that makes no progress for S seconds (default: %(default)g)",
    )
    g.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=DEFAULT.shutdown_timeout,
        metavar="S",
        help="on SIGTERM/SIGINT, let in-flight responses finish for up to S seconds "
        "(default: %(default)g)",
    )
    g.add_argument(
        "--max-connections",
        type=_count,
        default=DEFAULT.max_connections,
        metavar="N",
        help="answer connections beyond N with 503 and close them (default: %(default)s)",
    )
    g.add_argument(
        "--max-connections-per-ip",
        type=_size,
        default=DEFAULT.max_connections_per_ip,
        metavar="N",
        help="answer a client's connections beyond N with 429 and close them; the client "
        "is the one the trusted-proxy rules name (default: %(default)s, no cap)",
    )
    g.add_argument(
        "--limit-rate",
        type=_rate,
        default=DEFAULT.limit_rate,
        metavar="BYTES_PER_S",
        help="limit each response to this many bytes per second (k/m suffixes; 0 = off) "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--limit-rate-after",
        type=_rate,
        default=DEFAULT.limit_rate_after,
        metavar="BYTES",
        help="send this much of each response at full speed first (k/m suffixes) "
        "(default: %(default)s)",
    )


def _proxies(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--forwarded-allow-ips",
        default=DEFAULT.forwarded_allow_ips,
        metavar="LIST",
        help="comma-separated addresses/networks of proxies whose Forwarded and "
        "X-Forwarded-* fields are believed ('*' = all; unix-socket peers are "
        "trusted) (default: %(default)s)",
    )
    g.add_argument(
        "--root-path",
        type=_root_path,
        default=DEFAULT.root_path,
        metavar="/PREFIX",
        help="the prefix a reverse proxy mounts the server under; redirects carry "
        "it, and requests are accepted with or without it (default: none)",
    )
    g.add_argument(
        "--certfile", metavar="PEM", help="serve HTTPS with this certificate chain (default: none)"
    )
    g.add_argument(
        "--keyfile",
        metavar="PEM",
        help="private key for --certfile, if not in the same file (default: none)",
    )


def _logging(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--access-log",
        choices=("on", "off"),
        default=_on_off(DEFAULT.access_log),
        help="one line per response, on stdout or --access-log-file (default: %(default)s)",
    )
    g.add_argument(
        "--access-log-format",
        choices=("combined", "json"),
        default=DEFAULT.access_log_format,
        help="access log lines: Combined Log Format or one JSON object (default: %(default)s)",
    )
    g.add_argument(
        "--access-log-file",
        metavar="PATH",
        help="write the access log to PATH, reopened on SIGHUP (default: stdout)",
    )
    g.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=DEFAULT.log_level,
        help="diagnostic log level, on stderr (default: %(default)s)",
    )
    g.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics, a separate listener "
        "(default: off)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    port = args.port if args.port is not None else args.port_arg
    return Config(
        root=os.path.abspath(args.directory),
        host=args.bind or None,
        port=DEFAULT.port if port is None else port,
        sendfile=not args.no_sendfile,
        loop=args.loop,
        allow_dotfiles=args.dotfiles == "allow",
        access_log=args.access_log == "on",
        log_level=args.log_level,
        inline_max=args.inline_max,
        header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        send_timeout=args.send_timeout,
        max_connections=args.max_connections,
        shutdown_timeout=args.shutdown_timeout,
        cache=not args.no_cache,
        unix=args.unix,
        unix_mode=args.unix_mode,
        workers=args.workers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        root_path=args.root_path,
        certfile=args.certfile,
        keyfile=args.keyfile,
        access_log_file=args.access_log_file,
        access_log_format=args.access_log_format,
        autoindex=args.autoindex,
        precompressed=args.precompressed,
        attachment=args.attachment,
        digest=args.digest == "sha-256",
        limit_rate=args.limit_rate,
        limit_rate_after=args.limit_rate_after,
        metrics=args.metrics,
        cache_control=tuple(args.cache_control or DEFAULT.cache_control),
        cors=args.cors,
        archives=args.archives,
        mirrors=tuple(args.mirror or DEFAULT.mirrors),
        archive_max_files=args.archive_max_files,
        archive_max_bytes=args.archive_max_bytes,
        max_connections_per_ip=args.max_connections_per_ip,
    )


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def raise_fd_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: each connection costs an fd."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _check(config: Config) -> str | None:
    """What is wrong with a configuration, as a one-line message, or None."""
    if not os.path.isdir(config.root):
        what = "does not exist" if not os.path.exists(config.root) else "is not a directory"
        return f"{config.root} {what}"
    try:
        TrustedPeers(config.forwarded_allow_ips)
    except ValueError as exc:
        return f"--forwarded-allow-ips: {exc}"
    if config.metrics is not None and parse_address(config.metrics) is None:
        return f"--metrics: expected ADDR:PORT, got {config.metrics!r}"
    if config.keyfile and not config.certfile:
        return "--keyfile needs --certfile"
    try:
        tls_context(config)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot load the TLS certificate or key: {exc}"
    return None


def open_listeners(config: Config) -> list[list[socket.socket]]:
    """The listening sockets, one set per worker. Raises OSError with a message."""
    inherited = inherited_sockets()
    if inherited:
        return [inherited] * config.workers  # systemd's sockets, shared by all workers
    if config.unix:
        try:
            return [[bind_unix(config.unix, config.unix_mode)]] * config.workers
        except UnixSocketInUse:
            raise OSError(f"{config.unix}: another server is listening on it") from None
        except OSError as exc:
            raise OSError(f"cannot listen on {config.unix}: {exc.strerror or exc}") from None
    where = f"{config.host or '*'}:{config.port}"
    sets: list[list[socket.socket]] = []
    port = config.port
    try:
        for _ in range(config.workers):
            sockets = bind_tcp(config.host, port, reuse_port=config.workers > 1)
            port = sockets[0].getsockname()[1]  # port 0: every worker on the one drawn
            sets.append(sockets)
    except OSError as exc:
        for sockets in sets:
            for sock in sockets:
                sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(f"address {where} is already in use") from None
        raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sets


def run_worker(config: Config, listeners: list[socket.socket], index: int = 0) -> int:
    """One server process: its own event loop on ``listeners``."""
    loop = _new_loop(config.loop)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(config, listeners, worker=index))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 0
    finally:
        loop.close()


def features_on(config: Config) -> list[str]:
    """The optional behaviours this configuration turns on, as the startup line names them."""
    return [
        name
        for name, active in (
            ("tls", config.certfile is not None),
            ("autoindex", config.autoindex),
            ("precompressed=" + ",".join(config.precompressed), config.precompressed),
            ("archives=" + ",".join(config.archives), config.archives),
            ("digest=sha-256", config.digest),
            ("attachment", config.attachment),
            (f"mirrors={len(config.mirrors)}", config.mirrors),
            ("cache-control", config.cache_control),
            ("cors", config.cors),
            (f"limit-rate={_binary(config.limit_rate)}/s", config.limit_rate),
            (
                f"max-connections-per-ip={config.max_connections_per_ip}",
                config.max_connections_per_ip,
            ),
            (f"metrics={config.metrics}", config.metrics),
            ("dotfiles", config.allow_dotfiles),
            (f"root-path={config.root_path}", config.root_path),
            (f"access-log={config.access_log_format}", config.access_log),
        )
        if active
    ]


def serving_line(config: Config, sockets: Sequence[socket.socket], send_path: str) -> str:
    """``Serving DIR (N workers, send path P, features: ...) at URL[ and at URL]``: one
    line, the URL last (tests and the load-test harness read the port from its end)."""
    workers = f"{config.workers} worker{'s' if config.workers != 1 else ''}"
    features = ", ".join(features_on(config)) or "none"
    urls = " and at ".join(dict.fromkeys(describe(sock) for sock in sockets))
    root = os.path.realpath(config.root)
    return f"Serving {root} ({workers}, send path {send_path}, features: {features}) at {urls}"


def _send_path(config: Config) -> str:
    """The body path the workers will use; ImportError for --loop uvloop without uvloop."""
    loop = _new_loop(config.loop)
    try:
        return choose_send_path(config, loop)
    finally:
        loop.close()


def _validate(config: Config) -> str | None:
    """Everything --check-config checks, as a one-line message, or None."""
    problem = _check(config)
    if problem is None:
        try:
            _send_path(config)
        except ImportError:
            problem = "--loop uvloop, but uvloop is not installed"
    return problem


def check_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace, sources: dict[str, str]
) -> int:
    """--check-config: the effective configuration on stdout, then valid (0) or not (2)."""
    config = config_from_args(args)
    shown = {"port": config.port, "directory": config.root, "workers": config.workers}
    for line in settings.describe(parser, args, sources, shown):
        print(line)
    for name in settings.unknown_variables(parser):
        print(f"warning: {name} is not a setting (ignored)", file=sys.stderr)
    problem = _validate(config)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print("configuration OK", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, sources = settings.parse(parser, argv)
    if args.check_config:
        return check_config(parser, args, sources)
    config = config_from_args(args)
    problem = _check(config)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        send_path = _send_path(config)
    except ImportError:
        print("error: --loop uvloop, but uvloop is not installed", file=sys.stderr)
        return EXIT_USAGE
    raise_fd_limit()
    try:
        listener_sets = open_listeners(config)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(serving_line(config, listener_sets[0], send_path), flush=True)
    try:
        if config.workers == 1:
            return run_worker(config, listener_sets[0])
        supervisor = Supervisor(
            listener_sets,
            lambda index, listeners: run_worker(config, listeners, index),
            config.shutdown_timeout,
        )
        return supervisor.run()
    finally:
        if config.unix:
            with contextlib.suppress(OSError):
                os.unlink(config.unix)


if __name__ == "__main__":
    sys.exit(main())
