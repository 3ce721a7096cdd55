"""Listening sockets, made by us and handed to the loop with ``create_server(sock=...)``.

Why not let the loop bind: the stdlib loop's accept path, on EMFILE/ENFILE, logs and
re-arms a retry for every one of up to ``backlog`` accept attempts, so when the process
runs out of descriptors it spins and writes tens of thousands of log lines a second. Our
listener's ``accept`` handles the condition itself, the way libuv (and so uvloop) does:
it frees a reserved descriptor, accepts the pending connection and closes it at once (the
client sees a prompt close instead of hanging in the backlog), and reports "nothing to
accept". The log says so at most once per second.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import time

log = logging.getLogger("zerocopy.listen")

DEFAULT_BACKLOG = 1024
_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE})
# Connections shed per accept() call while out of descriptors: enough to drain a burst,
# few enough that the loop gets on with the connections it already has.
_SHED_PER_CALL = 64
_LOG_INTERVAL = 1.0


class GuardedListener(socket.socket):
    """A listening socket whose accept() never lets EMFILE/ENFILE reach the loop."""

    _last_log = 0.0
    _shed_since_log = 0

    def reserve(self) -> None:
        # The spare descriptor that is closed to make room for shedding (libuv's trick).
        self._reserve_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def accept(self) -> tuple[socket.socket, object]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in _OUT_OF_FDS:
                raise
            self._shed()
            raise BlockingIOError(errno.EAGAIN, "out of file descriptors") from None

    def _shed(self) -> None:
        shed = 0
        for _ in range(_SHED_PER_CALL):
            if self._reserve_fd < 0:
                with contextlib.suppress(OSError):
                    self.reserve()
                if self._reserve_fd < 0:
                    break
            os.close(self._reserve_fd)
            self._reserve_fd = -1
            try:
                fd, _ = self._accept()  # type: ignore[attr-defined]  # socket.socket internal
            except OSError:
                fd = -1  # nothing pending (EAGAIN), or still out of descriptors
            if fd >= 0:
                os.close(fd)
                shed += 1
            with contextlib.suppress(OSError):
                self.reserve()
            if fd < 0:
                break
        self._shed_since_log += shed
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            log.error(
                "out of file descriptors: closed %d new connection(s) at accept "
                "(raise the fd limit or lower --max-connections)",
                self._shed_since_log,
            )
            self._last_log = now
            self._shed_since_log = 0

    def close(self) -> None:
        if getattr(self, "_reserve_fd", -1) >= 0:
            os.close(self._reserve_fd)
            self._reserve_fd = -1
        super().close()


def _listener(family: int, addr: tuple, backlog: int, reuse_port: bool = False) -> GuardedListener:
    sock = GuardedListener(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Worker processes each bind their own socket to the same port; the kernel
            # spreads new connections evenly among them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # One socket per family, as asyncio does: the v4 socket takes IPv4.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        _start_listening(sock, backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _start_listening(sock: GuardedListener, backlog: int) -> None:
    sock.listen(backlog)
    sock.setblocking(False)
    sock.reserve()


def bind_tcp(
    host: str | None, port: int, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False
) -> list[socket.socket]:
    """Listening sockets for ``host`` (None: all interfaces, IPv4 and IPv6) and ``port``.

    With port 0 and several addresses, every socket gets the port the first one drew.
    Raises OSError as bind() does (EADDRINUSE, EADDRNOTAVAIL, EACCES).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: set[tuple] = set()
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, addr in infos:
            key = (family, addr[:2])
            if key in seen:
                continue
            seen.add(key)
            if port == 0 and sockets:
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            try:
                sockets.append(_listener(family, addr, backlog, reuse_port))
            except OSError as exc:
                # No IPv6 on this host: serving IPv4 alone is what the user would expect.
                if (
                    host is None
                    and family == socket.AF_INET6
                    and exc.errno
                    in (
                        errno.EAFNOSUPPORT,
                        errno.EADDRNOTAVAIL,
                    )
                ):
                    continue
                raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class UnixSocketInUse(OSError):
    """Another process is listening on the unix socket path."""


def bind_unix(path: str, mode: int = 0o660, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A listening unix domain socket at ``path`` with permissions ``mode``.

    A socket file left behind by a server that died is removed, but only when nothing
    answers on it; a live one raises UnixSocketInUse, and a path that is not a socket
    (a typo pointing at a regular file) is never deleted.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: nobody listens
        else:
            raise UnixSocketInUse(errno.EADDRINUSE, "a server is listening on it", path)
        finally:
            probe.close()
    sock = GuardedListener(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        _start_listening(sock, backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# systemd socket activation (sd_listen_fds(3)): inherited sockets start at fd 3.
SD_LISTEN_FDS_START = 3


def inherited_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Listening sockets passed by systemd (LISTEN_FDS for this LISTEN_PID), or [].

    The variables are removed once read, so they do not leak into child processes.
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    sockets: list[socket.socket] = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sock = GuardedListener(fileno=fd)
        sock.setblocking(False)
        sock.reserve()
        sockets.append(sock)
    return sockets


def describe(sock: socket.socket) -> str:
    """How a listening socket reads in "Serving DIR at ...": a URL, or unix:PATH."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
