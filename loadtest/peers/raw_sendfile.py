"""The physical limit for large downloads: a blocking ``os.sendfile`` loop, nothing else.

    python loadtest/peers/raw_sendfile.py --dir D --port P [--host H]

One thread, a blocking accept loop, one request per connection: read the head, take the
path from the request line (GET only, no Range, no keep-alive), fstat, write a minimal
200 head and call os.sendfile until the whole file is sent. Prints
``Serving D at http://H:PORT/`` once listening (so --port 0 works); exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import sys
from urllib.parse import unquote, urlsplit

MAX_HEAD = 16 * 1024


def read_head(conn: socket.socket) -> bytes:
    # A receive timeout in the kernel (not settimeout, which would make os.sendfile
    # non-blocking): a client that never sends cannot hold the only thread for long.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def resolve(root: str, target: str) -> str | None:
    path = os.path.realpath(os.path.join(root, unquote(urlsplit(target).path).lstrip("/")))
    return path if path.startswith(root + os.sep) else None


def handle(conn: socket.socket, root: str) -> None:
    parts = read_head(conn).split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or parts[0] != b"GET":
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    path = resolve(root, parts[1].decode("latin-1"))
    try:
        fd = os.open(path, os.O_RDONLY) if path else -1
    except OSError:
        fd = -1
    if fd < 0:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    try:
        size = os.fstat(fd).st_size
        # Corked, the kernel sends full segments only: the best a sendfile loop can do (nginx
        # does the same with tcp_nopush). Uncorking at the end pushes the last one out.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size
        )
        offset = 0
        while offset < size:
            sent = os.sendfile(conn.fileno(), fd, offset, size - offset)
            if sent == 0:
                break
            offset += sent
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    root = os.path.realpath(args.dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with socket.create_server((args.host, args.port), backlog=1024) as listener:
        print(f"Serving {root} at http://{args.host}:{listener.getsockname()[1]}/", flush=True)
        while True:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):  # the client went away: next one
                handle(conn, root)


if __name__ == "__main__":
    sys.exit(main())
