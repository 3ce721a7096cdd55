"""Running the server: shared state, listening sockets, signals and shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from ..config import Config
from ..connection.protocol import HttpProtocol
from ..connection.shared import Shared
from ..files.filecache import FileCache
from ..files.lookup import FileLookup
from ..files.root import Root
from ..http.cachecontrol import CacheControl, parse_rule
from ..http.cors import CorsPolicy
from ..http.forwarded import TrustedPeers
from ..http.metalink import parse_mirror
from ..observe.accesslog import AccessLog
from ..observe.record import TIMED_OUT, Observer
from ..observe.stats import Stats
from ..respond.handler import Features, Handler
from ..send import SENDERS
from .listen import DEFAULT_BACKLOG, describe
from .metrics import parse_address, start_metrics_server

log = logging.getLogger("zerocopy.app")


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


def choose_send_path(config: Config, loop: asyncio.AbstractEventLoop) -> str:
    """The body path for large files: our dup'ed-socket sendfile on uvloop, the loop's
    own sendfile on the stdlib loop, buffered when sendfile is off or missing, and with
    TLS (the kernel cannot encrypt what sendfile would move; a sendfile on the socket
    would send plaintext past the TLS layer)."""
    if not config.sendfile or not hasattr(os, "sendfile") or config.certfile:
        return "buffered"
    return "sendfile" if is_uvloop(loop) else "loop.sendfile"


def build_shared(config: Config, loop: asyncio.AbstractEventLoop) -> Shared:
    """What every connection of this server shares, from the configuration."""
    handler = Handler(
        FileLookup(Root(config.root, config.allow_dotfiles), config.autoindex),
        FileCache() if config.cache else None,
        config.inline_body_max,
        config.root_path,
        Features(
            codings=config.precompressed,
            attachment=config.attachment,
            digest=config.digest,
            cors=CorsPolicy(config.cors) if config.cors else None,
            archives=config.archives,
            mirrors=tuple(parse_mirror(m, i + 2) for i, m in enumerate(config.mirrors)),
            scheme="https" if config.certfile else "http",
            archive_max_files=config.archive_max_files,
            archive_max_bytes=config.archive_max_bytes,
            cache_control=(
                CacheControl(tuple(parse_rule(r) for r in config.cache_control))
                if config.cache_control
                else None
            ),
        ),
    )
    access_log = (
        AccessLog(loop, path=config.access_log_file, fmt=config.access_log_format)
        if config.access_log
        else None
    )
    observer = Observer(
        loop,
        Stats(),
        access_log,
        TrustedPeers(config.forwarded_allow_ips),
        timed=config.metrics is not None,
    )
    path = choose_send_path(config, loop)
    return Shared(config, loop, handler, path, SENDERS[path], observer)


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context, or None without --certfile. Raises OSError/SSLError."""
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _quiet_handshake_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Failed TLS handshakes (scanners, plain HTTP on the TLS port) are the client's
    problem: a debug line, not an ERROR with a traceback per attempt."""
    exc = context.get("exception")
    if (
        isinstance(exc, (ssl.SSLError, ConnectionError))
        and "handshake" in str(context.get("message", "")).lower() + str(exc).lower()
    ):
        log.debug("TLS handshake failed: %s", exc)
        return
    loop.default_exception_handler(context)


async def serve(
    config: Config,
    listeners: list[socket.socket],
    on_ready: Callable[[Shared], None] | None = None,
    worker: int = 0,
) -> int:
    """Serve on ``listeners`` until SIGINT/SIGTERM; the exit status."""
    loop = asyncio.get_running_loop()
    state = build_shared(config, loop)
    context = tls_context(config)
    factory: Callable[[], asyncio.Protocol]
    if context is not None:
        loop.set_exception_handler(_quiet_handshake_errors)

        def factory() -> asyncio.Protocol:
            # Called at accept, before the handshake: the connection counts from here.
            return state.handshaking(HttpProtocol(state))

    else:
        factory = lambda: HttpProtocol(state)  # noqa: E731
    servers: list[asyncio.AbstractServer] = [
        # backlog again: both loops call listen() on a given socket with their default 100.
        # A TLS handshake is bounded by --header-timeout (asyncio's default is 60 s).
        await loop.create_server(
            factory,
            sock=sock,
            backlog=DEFAULT_BACKLOG,
            ssl=context,
            ssl_handshake_timeout=config.header_timeout if context is not None else None,
        )
        for sock in listeners
    ]
    log.info(
        "loop=%s send path=%s inline bodies <= %d bytes",
        type(loop).__module__.split(".")[0],
        state.send_path,
        state.inline_max,
    )
    if config.metrics is not None:
        host, port = parse_address(config.metrics)  # type: ignore[misc]  # checked by the CLI
        metrics = await start_metrics_server(state, host, port + worker if port else 0, worker)
        servers.append(metrics)
        bound = metrics.sockets[0]  # type: ignore[attr-defined]  # a Server, not Abstract
        log.info("metrics at http://%s/metrics", describe(bound)[7:].rstrip("/"))
    if on_ready is not None:
        on_ready(state)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reopen_logs, state)
    try:
        await stop.wait()
        log.info("shutting down")
        # The handlers stay until the end: a second SIGTERM or SIGINT (a signal sent to the
        # whole process group reaches a worker directly and again through its supervisor)
        # must not cut the downloads the first one lets finish.
        await _shut_down(servers, state, config.shutdown_timeout)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    if state.observer.access_log is not None:
        state.observer.access_log.flush()
    return 0


def _reopen_logs(state: Shared) -> None:
    log.info("SIGHUP: reopening logs")
    if state.observer.access_log is not None:
        state.observer.access_log.reopen()


async def _shut_down(servers: list[asyncio.AbstractServer], state: Shared, timeout: float) -> None:
    """Stop accepting, close idle connections now, give busy ones ``timeout`` seconds."""
    for server in servers:
        server.close()
    state.shutting_down = True
    deadline = state.loop.time() + timeout
    while state.open_connections() and state.loop.time() < deadline:
        for conn in list(state.connections):
            conn.close_if_idle()
        await asyncio.sleep(0.05)
    for conn in list(state.connections):
        conn.abort(TIMED_OUT)
    await asyncio.sleep(0)
