"""The command line: a drop-in for ``python -m http.server`` with a few more options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from .app import serve
from .config import Config
from .send import DEFAULT_INLINE_MAX

EXIT_USAGE = 2


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("size must be >= 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("seconds must be a positive number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerocopy-server",
        description="Serve a directory over HTTP/1.1, sending files with kernel sendfile.",
    )
    p.add_argument(
        "port_arg", nargs="?", type=_port, metavar="PORT", help="port to listen on (default 8000)"
    )
    p.add_argument("-p", "--port", type=_port, help="port to listen on (overrides PORT)")
    p.add_argument(
        "-d",
        "--directory",
        default=os.getcwd(),
        help="directory to serve (default: the current directory)",
    )
    p.add_argument("-b", "--bind", metavar="ADDR", help="address to bind (default: all interfaces)")
    p.add_argument(
        "--no-sendfile",
        action="store_true",
        help="send file bodies with read/write instead of sendfile",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop (default auto: uvloop when importable)",
    )
    p.add_argument(
        "--dotfiles",
        choices=("deny", "allow"),
        default="deny",
        help="serve dotfiles and dot-directories (default deny: 404)",
    )
    p.add_argument(
        "--access-log",
        choices=("on", "off"),
        default="on",
        help="one Combined Log Format line per response on stdout (default on)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="diagnostic log level, on stderr (default info)",
    )
    p.add_argument(
        "--inline-max",
        type=_size,
        default=DEFAULT_INLINE_MAX,
        metavar="BYTES",
        help="bodies up to this size are sent in one write with the head "
        f"(default {DEFAULT_INLINE_MAX})",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep small files' responses in memory (each request opens and reads its file)",
    )
    p.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="close a connection whose request head is not complete S seconds "
        "after its first byte (default 10)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="close an idle keep-alive connection after S seconds (default 5)",
    )
    p.add_argument(
        "--send-timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="abort a response that makes no progress for S seconds (default 60)",
    )
    p.add_argument(
        "--max-connections",
        type=_count,
        default=10000,
        metavar="N",
        help="answer connections beyond N with 503 and close them (default 10000)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="on SIGTERM/SIGINT, let in-flight responses finish for up to S seconds (default 30)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    port = args.port if args.port is not None else args.port_arg
    return Config(
        root=os.path.abspath(args.directory),
        host=args.bind or None,
        port=8000 if port is None else port,
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if not os.path.isdir(config.root):
        what = "does not exist" if not os.path.exists(config.root) else "is not a directory"
        print(f"error: {config.root} {what}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        loop = _new_loop(config.loop)
    except ImportError:
        print("error: --loop uvloop, but uvloop is not installed", file=sys.stderr)
        return EXIT_USAGE
    raise_fd_limit()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(config))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 0
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
