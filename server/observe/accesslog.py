"""The access log: one line per response (Combined Log Format, or JSON), to stdout.

Lines are buffered and written once per event-loop iteration, not once per response:
a write syscall per request is a measurable share of a small-file request's cost.
Everything taken from the request is escaped, so a client cannot forge log lines.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TextIO

from ..http.httpdate import format_clf_date
from ..http.request import Request

# Escape like nginx: '"' and '\' and every byte outside printable ASCII become \xHH.
_ESCAPES = {c: f"\\x{c:02X}" for c in (*range(0x20), *range(0x7F, 0x100), 0x22, 0x5C)}


def escape(value: str | bytes) -> str:
    """A request-supplied value made safe for one log line."""
    if isinstance(value, str):
        # Request fields are decoded as latin-1: encoding back gives the bytes received.
        value = value.encode("latin-1", "replace")
    return value.decode("latin-1").translate(_ESCAPES)


def format_combined(peer: str, request: Request, status: int, sent: int, when: str) -> str:
    """``host - - [time] "request line" status bytes "referer" "user-agent"``."""
    if request.method:
        line = f"{request.method} {escape(request.target)} HTTP/{request.version}"
    else:
        line = "-"  # refused before it could be parsed
    referer = escape(request.referer) if request.referer is not None else "-"
    agent = escape(request.user_agent) if request.user_agent is not None else "-"
    return f'{peer} - - [{when}] "{line}" {status} {sent if sent else "-"} "{referer}" "{agent}"\n'


def format_json(
    peer: str, request: Request, status: int, sent: int, now: float, outcome: str = "complete"
) -> str:
    """One JSON object per line; every request-supplied string is JSON-escaped (and the
    bytes received are kept: latin-1 decoding maps each byte to one code point)."""
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "client": peer,
        "method": request.method or None,
        "target": request.target.decode("latin-1") if request.method else None,
        "protocol": f"HTTP/{request.version}" if request.method else None,
        "status": status,
        "bytes": sent,
        "outcome": outcome,
        "referer": request.referer,
        "user_agent": request.user_agent,
    }
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


class AccessLog:
    """Collects log lines and writes them in batches at the end of a loop iteration."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: TextIO | None = None,
        path: str | None = None,
        fmt: str = "combined",
    ) -> None:
        self._loop = loop
        self._json = fmt == "json"
        self._path = path  # a file we own and reopen on SIGHUP (log rotation)
        if path is not None:
            stream = open(path, "a", encoding="latin-1")  # noqa: SIM115
        self._stream = stream if stream is not None else sys.stdout
        self._lines: list[str] = []
        self._second = -1
        self._time = ""

    def log(self, peer: str, request: Request, status: int, sent: int, outcome: str) -> None:
        if not self._lines:
            self._loop.call_soon(self.flush)
        if self._json:
            self._lines.append(format_json(peer, request, status, sent, time.time(), outcome))
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._time = format_clf_date(now)
        self._lines.append(format_combined(peer, request, status, sent, self._time))

    def flush(self) -> None:
        if not self._lines:
            return
        data = "".join(self._lines)
        self._lines.clear()
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or full: losing log lines must not take the server down

    def reopen(self) -> None:
        """After logrotate moved the file away: write to a new file at the same path."""
        self.flush()
        if self._path is None:
            return
        try:
            stream = open(self._path, "a", encoding="latin-1")  # noqa: SIM115
        except OSError:
            return  # keep writing to the old file rather than lose lines
        old, self._stream = self._stream, stream
        old.close()
