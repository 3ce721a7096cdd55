"""The trivial ASGI app behind Granian's own static-file handler (loadtest's ``granian`` peer).

Granian answers GET /static/... from --static-path-mount itself (in Rust) before any app
is called; what reaches this app is everything else, and it answers 404.

    granian --interface asgi --static-path-route /static --static-path-mount D granian_app:app
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"0"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
