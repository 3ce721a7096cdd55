"""Server configuration: what the command line decided, in one immutable object."""

from __future__ import annotations

from dataclasses import dataclass

from .send import DEFAULT_INLINE_MAX


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
