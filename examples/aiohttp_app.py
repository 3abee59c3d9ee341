"""An aiohttp application, unmodified, served on uringio's event loop.

    python examples/aiohttp_app.py --backend uring --port 8080
    curl http://127.0.0.1:8080/hello/you
"""

import argparse
import asyncio
import signal

from aiohttp import web

import uringio


# --8<-- [start:app]
async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": request.match_info["name"]})


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/echo", echo)
    return app
# --8<-- [end:app]


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host, port = runner.addresses[0][:2]
    print(f"listening on {host}:{port} (backend={loop.backend})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto", choices=uringio.BACKENDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uringio.run(serve(args.host, args.port), backend=args.backend)
