"""aiohttp's ``web.static`` on aiohttp's own server, one process, one event loop.

    python loadtest/peers/aiohttp_static.py --dir D --port P [--uvloop] [--host H]

Access log off. Prints ``Serving D at http://H:PORT/`` once listening (so --port 0 works),
and exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web


async def serve(directory: str, host: str, port: int) -> None:
    app = web.Application()
    app.add_routes([web.static("/", directory, show_index=False, follow_symlinks=False)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"Serving {directory} at http://{host}:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's")
    args = p.parse_args(argv)
    directory = os.path.abspath(args.dir)
    coro = serve(directory, args.host, args.port)
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
