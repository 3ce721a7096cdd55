"""Server configuration: what the command line decided, in one immutable object.

The defaults below are the only copy: the command line's defaults and its help text are
read from ``Config()`` (see ``server/process/cli.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Bodies up to this size go out inline, and are kept in the file cache. Measured (README
# "Performance"): served from the cache, a 64 KiB file makes 43 k req/s inline against
# 19 k with sendfile, since per-request work, not copying, is what costs here.
DEFAULT_INLINE_MAX = 64 * 1024


@dataclass(frozen=True)
class Config:
    root: str = "."
    host: str | None = None  # None: all interfaces, like http.server
    port: int = 8000
    sendfile: bool = True
    loop: str = "auto"  # auto | uvloop | asyncio
    allow_dotfiles: bool = False
    access_log: bool = True
    log_level: str = "info"
    inline_max: int = DEFAULT_INLINE_MAX  # bodies up to this size go out in one write
    header_timeout: float = 10.0  # a request head must be complete this long after its start
    keepalive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    send_timeout: float = 60.0  # a response making no progress this long is aborted
    max_connections: int = 10000  # beyond it, new connections get 503 and are closed
    shutdown_timeout: float = 30.0  # in-flight responses may finish this long after SIGTERM
    cache: bool = True  # keep small files' responses, revalidated by stat per request
    unix: str | None = None  # listen on this unix socket path instead of TCP
    unix_mode: int = 0o660
    workers: int = 1
    forwarded_allow_ips: str = "127.0.0.1"
    root_path: str = ""  # "/prefix" a proxy mounts us under, or ""
    certfile: str | None = None
    keyfile: str | None = None
    access_log_file: str | None = None
    access_log_format: str = "combined"  # combined | json
    autoindex: bool = False  # list directories without index.html
    precompressed: tuple[str, ...] = ()  # content codings of .br/.zst/.gz variants, preferred first
    attachment: bool = False  # Content-Disposition: attachment on every file
    digest: bool = False  # Repr-Digest: sha-256 on GET/HEAD of files
    limit_rate: int = 0  # bytes per second per response, 0 = unlimited
    limit_rate_after: int = 0  # bytes sent at full speed before the limit applies
    metrics: str | None = None  # ADDR:PORT of the Prometheus endpoint
    cache_control: tuple[str, ...] = ()  # --cache-control rules, in order (cachecontrol.py)
    cors: tuple[str, ...] = ()  # origins allowed to read with fetch(), or ("*",)
    max_connections_per_ip: int = 0  # beyond it, a client's new connection gets 429; 0 = off
    archives: tuple[str, ...] = ()  # directory downloads offered: "tar", "zip"
    mirrors: tuple[str, ...] = ()  # --mirror BASE_URL[;pri=N], in order
    archive_max_files: int = 10_000  # beyond these, an archive request gets 413
    archive_max_bytes: int = 256 * 1024**3

    @property
    def inline_body_max(self) -> int:
        """Bodies up to this size are sent inline and kept in the file cache. Rate-limited
        bodies must go through a pacing sender, so not inline or cached."""
        if self.limit_rate:
            return min(self.inline_max, self.limit_rate_after)
        return self.inline_max
