"""A Prometheus text endpoint on a listener of its own (``--metrics ADDR:PORT``).

Separate from the file server: scrapes never queue behind downloads, and the endpoint can
be bound to an address the public cannot reach. With ``--workers N`` each worker serves
its own figures on PORT + its index (0, 1, ...), labelled ``worker``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..http.head import render
from ..observe.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ..connection.shared import Shared

log = logging.getLogger("zerocopy.metrics")

# Send paths whose bytes the kernel moved without copying them through the process.
ZERO_COPY_PATHS = frozenset({"sendfile", "loop.sendfile"})


def parse_address(text: str) -> tuple[str, int] | None:
    """``127.0.0.1:9100``, ``[::1]:9100``, ``:9100`` (all interfaces) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _labels(**labels: object) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


def render_text(state: Shared, worker: int) -> str:
    """The exposition text (format 0.0.4) of one server process."""
    stats = state.stats
    w = {"worker": worker}
    out = [
        "# HELP zerocopy_requests_total Responses sent, by request method and status.",
        "# TYPE zerocopy_requests_total counter",
    ]
    for (method, status), n in sorted(stats.requests.items()):
        out.append(
            f"zerocopy_requests_total{_labels(method=method or '-', status=status, **w)} {n}"
        )
    out += [
        "# HELP zerocopy_body_bytes_total Response body bytes sent, by send path.",
        "# TYPE zerocopy_body_bytes_total counter",
    ]
    for path, n in sorted(stats.bytes_by_path.items()):
        out.append(f"zerocopy_body_bytes_total{_labels(path=path, **w)} {n}")
    zero = sum(n for p, n in stats.bytes_by_path.items() if p in ZERO_COPY_PATHS)
    copied = sum(n for p, n in stats.bytes_by_path.items() if p not in ZERO_COPY_PATHS)
    out += [
        "# HELP zerocopy_sendfile_bytes_total Body bytes moved by sendfile (zero-copy).",
        "# TYPE zerocopy_sendfile_bytes_total counter",
        f"zerocopy_sendfile_bytes_total{_labels(**w)} {zero}",
        "# HELP zerocopy_buffered_bytes_total Body bytes copied through the process.",
        "# TYPE zerocopy_buffered_bytes_total counter",
        f"zerocopy_buffered_bytes_total{_labels(**w)} {copied}",
        "# HELP zerocopy_responses_by_path_total Responses, by send path.",
        "# TYPE zerocopy_responses_by_path_total counter",
    ]
    for path, n in sorted(stats.responses_by_path.items()):
        out.append(f"zerocopy_responses_by_path_total{_labels(path=path, **w)} {n}")
    out += [
        "# HELP zerocopy_connections_active Client connections open now.",
        "# TYPE zerocopy_connections_active gauge",
        f"zerocopy_connections_active{_labels(**w)} {state.open_connections()}",
        "# HELP zerocopy_connections_total Client connections accepted.",
        "# TYPE zerocopy_connections_total counter",
        f"zerocopy_connections_total{_labels(**w)} {stats.connections_total}",
    ]
    cache = state.handler.cache
    if cache is not None:
        out += [
            "# HELP zerocopy_file_cache_hits_total Small-file responses served from the cache.",
            "# TYPE zerocopy_file_cache_hits_total counter",
            f"zerocopy_file_cache_hits_total{_labels(**w)} {cache.hits}",
            "# HELP zerocopy_file_cache_misses_total Cache lookups that found no entry.",
            "# TYPE zerocopy_file_cache_misses_total counter",
            f"zerocopy_file_cache_misses_total{_labels(**w)} {cache.misses}",
        ]
    out += [
        "# HELP zerocopy_connections_rejected_total Connections turned away (503) at "
        "--max-connections.",
        "# TYPE zerocopy_connections_rejected_total counter",
        f"zerocopy_connections_rejected_total{_labels(**w)} {state.rejected_connections}",
        "# HELP zerocopy_client_limit_refused_total Connections and requests answered 429 "
        "at --max-connections-per-ip.",
        "# TYPE zerocopy_client_limit_refused_total counter",
        f"zerocopy_client_limit_refused_total{_labels(**w)} {state.clients.refused}",
        "# HELP zerocopy_response_seconds Time from a complete request to its last byte "
        "handed to the kernel.",
        "# TYPE zerocopy_response_seconds histogram",
    ]
    cumulative = 0
    for bound, n in zip(LATENCY_BUCKETS, stats.latency_counts, strict=False):
        cumulative += n
        out.append(f"zerocopy_response_seconds_bucket{_labels(le=repr(bound), **w)} {cumulative}")
    cumulative += stats.latency_counts[-1]
    out.append(f"zerocopy_response_seconds_bucket{_labels(le='+Inf', **w)} {cumulative}")
    out.append(f"zerocopy_response_seconds_sum{_labels(**w)} {stats.latency_sum:.6f}")
    out.append(f"zerocopy_response_seconds_count{_labels(**w)} {cumulative}")
    return "\n".join(out) + "\n"


async def start_metrics_server(
    state: Shared, host: str, port: int, worker: int
) -> asyncio.AbstractServer:
    """Serve ``GET /metrics`` (and nothing else) on host:port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head.partition(b" ")
            target = rest.partition(b" ")[0]
            if method in (b"GET", b"HEAD") and target.split(b"?")[0] == b"/metrics":
                status, body = 200, render_text(state, worker).encode("utf-8")
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, ctype = 404, b"404 Not Found\n", "text/plain; charset=utf-8"
            fields = (("Content-Type", ctype), ("Content-Length", str(len(body))))
            writer.write(render(status, fields, close=True) + (body if method != b"HEAD" else b""))
            await writer.drain()
        except (
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host or None, port, reuse_address=True)
