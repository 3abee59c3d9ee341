"""A trio echo server: plain trio, on uringio's IO manager; with
``--streams``, the same handler on uringio.trio's completion streams.

    python examples/trio_echo.py --backend uring --port 8888 [--streams]

Nothing in ``echo`` knows about uringio: the last lines, which pick how
the program runs, do; ``--streams`` changes the one call that makes the
server.
"""

import argparse
import functools
import signal

import trio

import uringio.trio


# --8<-- [start:server]
async def echo(stream: trio.abc.Stream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass   # the client went away


async def main(host: str, port: int, serve_tcp=trio.serve_tcp) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(serve_tcp, echo, port, host=host))
            host, port = listeners[0].socket.getsockname()[:2]
            backend = trio.lowlevel.current_statistics().io_statistics.backend
            print(f"listening on {host}:{port} (backend={backend})", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
# --8<-- [end:server]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--backend", choices=("uring", "epoll", "auto"), default="auto")
    parser.add_argument("--streams", action="store_true",
                        help="uringio.trio's streams (receive and send on completions)")
    args = parser.parse_args()
    # --8<-- [start:run]
    serve_tcp = uringio.trio.serve_tcp if args.streams else trio.serve_tcp
    uringio.trio.run(main, args.host, args.port, serve_tcp, backend=args.backend)
    # --8<-- [end:run]
