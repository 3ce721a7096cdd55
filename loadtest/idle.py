"""The idle-connection client: N keep-alive connections, each with one answered GET, held open.

    python -m loadtest.idle --port P --path /f4k.bin --count N [--hold S] [--batch B]

Raises its own RLIMIT_NOFILE to the hard limit (and lowers N to fit, saying so), opens the
connections in batches of B (each: connect, one HTTP/1.1 keep-alive GET, the whole response
read: Content-Length or chunked), then prints one JSON line ({"opened": n, ...}) and holds
them until a line arrives on stdin or --hold seconds pass; then closes them all and prints
{"closed": n}. Every wait is bounded. The harness (scenarios.idle) reads the server's RSS
while the connections are held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time

FD_MARGIN = 100


def kib_per_connection(before_kib: int, idle_kib: int, connections: int) -> float | None:
    """The server's RSS growth per held connection, in KiB (None without connections)."""
    if connections <= 0:
        return None
    return (idle_kib - before_kib) / connections


def fit_count(wanted: int, hard_limit: int) -> int:
    """How many connections fit under an fd limit, FD_MARGIN kept for everything else."""
    return max(0, min(wanted, hard_limit - FD_MARGIN))


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    if "chunked" in fields.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF (the last: trailer)
            if size == 0:
                break
    else:
        await reader.readexactly(int(fields.get("content-length", "0")))
    return status


async def _open_one(port: int, request: bytes) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status = await _read_response(reader)
        if status != 200:
            raise RuntimeError(f"status {status}")
    except BaseException:
        writer.close()
        raise
    return writer


async def run(port: int, path: str, count: int, batch: int, hold: float, note: str) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    writers: list[asyncio.StreamWriter] = []
    errors: list[str] = []
    t0 = time.monotonic()
    while len(writers) < count and not errors:
        n = min(batch, count - len(writers))
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(_open_one(port, request) for _ in range(n)), return_exceptions=True
                ),
                30,
            )
        except TimeoutError:
            errors.append(f"a batch of {n} took over 30 s")
            break
        for r in results:
            if isinstance(r, BaseException):
                errors.append(f"{type(r).__name__}: {r}")
            else:
                writers.append(r)
    report = {
        "wanted": count,
        "opened": len(writers),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "open_s": round(time.monotonic() - t0, 3),
        "note": note,
    }
    print(json.dumps(report), flush=True)
    loop = asyncio.get_running_loop()
    told = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), told.set)  # a line or EOF: close them
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(told.wait(), hold)
    loop.remove_reader(sys.stdin.fileno())
    for w in writers:
        w.close()
    print(json.dumps({"closed": len(writers)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/f4k.bin")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--hold", type=float, default=30.0, help="at most this long (seconds)")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count, note = fit_count(args.count, hard), ""
    if count < args.count:
        note = f"RLIMIT_NOFILE hard limit {hard}: {count} connections instead of {args.count}"
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.port, args.path, count, args.batch, args.hold, note))
    else:
        uvloop.run(run(args.port, args.path, count, args.batch, args.hold, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
