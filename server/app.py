"""Running the server: shared state, listening sockets, signals and shutdown."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable

from .accesslog import AccessLog
from .config import Config
from .filecache import FileCache
from .handler import Handler
from .listen import DEFAULT_BACKLOG, bind_tcp
from .lookup import FileLookup
from .protocol import HttpProtocol, Phase
from .send import SENDERS
from .stats import Stats

log = logging.getLogger("zerocopy.app")


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


def choose_send_path(config: Config, loop: asyncio.AbstractEventLoop) -> str:
    """The body path for large files: our dup'ed-socket sendfile on uvloop, the loop's
    own sendfile on the stdlib loop, buffered when sendfile is off or missing."""
    if not config.sendfile or not hasattr(os, "sendfile"):
        return "buffered"
    return "sendfile" if is_uvloop(loop) else "loop.sendfile"


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.handler = Handler(
            FileLookup(config.root, config.allow_dotfiles),
            FileCache() if config.cache else None,
            config.inline_max,
        )
        self.sender_name = choose_send_path(config, loop)
        self.sender = SENDERS[self.sender_name]
        self.inline_max = config.inline_max
        self.access_log = AccessLog(loop) if config.access_log else None
        self.connections: set[HttpProtocol] = set()
        self.stats = Stats()
        self.shutting_down = False
        self.rejected_connections = 0  # turned away at --max-connections
        self.debug = logging.getLogger("zerocopy.protocol").isEnabledFor(logging.DEBUG)


def _url_host(sockname: tuple) -> str:
    host = sockname[0]
    return f"[{host}]" if ":" in host else host


async def serve(
    config: Config,
    on_ready: Callable[[ServerState, list[str]], None] | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; the exit status (0, or 1 when listening failed)."""
    loop = asyncio.get_running_loop()
    state = ServerState(config, loop)
    try:
        listeners = bind_tcp(config.host, config.port)
    except OSError as exc:
        where = f"{config.host or '*'}:{config.port}"
        if exc.errno == errno.EADDRINUSE:
            print(f"error: address {where} is already in use", file=sys.stderr)
        else:
            print(f"error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    servers = [
        # backlog again: both loops call listen() on a given socket with their default 100.
        await loop.create_server(lambda: HttpProtocol(state), sock=sock, backlog=DEFAULT_BACKLOG)
        for sock in listeners
    ]
    urls = [
        f"http://{_url_host(sock.getsockname())}:{sock.getsockname()[1]}/" for sock in listeners
    ]
    print(f"Serving {state.handler.lookup.root} at {urls[0]}", flush=True)
    log.info(
        "loop=%s send path=%s inline bodies <= %d bytes",
        type(loop).__module__.split(".")[0],
        state.sender_name,
        state.inline_max,
    )
    if on_ready is not None:
        on_ready(state, urls)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("shutting down")
    await _shut_down(servers, state, config.shutdown_timeout)
    if state.access_log is not None:
        state.access_log.flush()
    return 0


async def _shut_down(
    servers: list[asyncio.AbstractServer], state: ServerState, timeout: float
) -> None:
    """Stop accepting, close idle connections now, give busy ones ``timeout`` seconds."""
    for server in servers:
        server.close()
    state.shutting_down = True
    deadline = state.loop.time() + timeout
    while state.connections and state.loop.time() < deadline:
        for conn in list(state.connections):
            if conn.phase is Phase.IDLE and not conn.pipeline and conn.request is None:
                conn.close_idle()
        await asyncio.sleep(0.05)
    for conn in list(state.connections):
        conn.abort()
    await asyncio.sleep(0)
