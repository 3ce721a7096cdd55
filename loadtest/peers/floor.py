"""The Python floor for small files: uvloop + httptools, every response precomputed.

    python loadtest/peers/floor.py --dir D --port P [--host H] [--max-bytes N]

At start, every regular file under D of at most --max-bytes (1 MiB) becomes one complete
response in memory: head (200, Content-Length, Content-Type application/octet-stream, a fixed
Last-Modified and ETag, keep-alive) and body. Per request: httptools' on_url and
on_message_complete callbacks only (no on_header: a Python call per header field costs
more, and a browser-like request carries eight), one os.stat of the path (a real server
must revalidate), one transport.write. Anything else is a 404. Small-file scenarios only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from email.utils import formatdate

import httptools
import uvloop

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def precompute(root: str, max_bytes: int) -> dict[bytes, tuple[str, bytes]]:
    """URL path -> (file path, whole response) for each regular file under root."""
    out: dict[bytes, tuple[str, bytes]] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            st = os.stat(path, follow_symlinks=False)
            if not os.path.isfile(path) or os.path.islink(path) or st.st_size > max_bytes:
                continue
            with open(path, "rb") as f:
                body = f.read()
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Last-Modified: {formatdate(st.st_mtime, usegmt=True)}\r\n"
                f'ETag: "{st.st_mtime_ns:x}-{st.st_size:x}"\r\nConnection: keep-alive\r\n\r\n'
            )
            url = "/" + os.path.relpath(path, root).replace(os.sep, "/")
            out[url.encode()] = (path, head.encode() + body)
    return out


class Floor(asyncio.Protocol):
    def __init__(self, files: dict[bytes, tuple[str, bytes]]) -> None:
        self.files, self.url = files, b""
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url.split(b"?", 1)[0]

    def on_message_complete(self) -> None:
        entry = self.files.get(self.url)
        if entry is not None:
            try:
                os.stat(entry[0])
            except OSError:
                entry = None
        self.transport.write(entry[1] if entry else NOT_FOUND)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(root: str, host: str, port: int, max_bytes: int) -> None:
    files = precompute(root, max_bytes)
    server = await asyncio.get_running_loop().create_server(
        lambda: Floor(files), host, port, backlog=1024
    )
    print(f"Serving {root} at http://{host}:{server.sockets[0].getsockname()[1]}/", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--max-bytes", type=int, default=1 << 20)
    args = p.parse_args(argv)
    uvloop.run(serve(os.path.realpath(args.dir), args.host, args.port, args.max_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
