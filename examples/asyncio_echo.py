"""An asyncio streams echo server: plain asyncio, on uringio's event loop.

    python examples/asyncio_echo.py --backend uring --port 8888

Nothing in ``echo`` or ``main`` knows about uringio; only the last lines,
which pick the event loop, do.
"""

import argparse
import asyncio
import signal

import uringio


# --8<-- [start:server]
async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass   # the client went away
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(echo, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host, port = server.sockets[0].getsockname()[:2]
    backend = getattr(loop, "backend", "asyncio")
    print(f"listening on {host}:{port} (backend={backend})", flush=True)
    async with server:
        await stop.wait()
# --8<-- [end:server]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto", choices=uringio.BACKENDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()
    # --8<-- [start:run]
    uringio.run(main(args.host, args.port), backend=args.backend)
    # --8<-- [end:run]
