"""Echo server: trio's serve_tcp with receive_some/send_all."""

import functools
import signal

import trio

from _common import BACKLOG, announce, parse_args


async def echo(stream: trio.SocketStream) -> None:
    # serve_tcp closes the stream when this returns.
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass  # the client went away; nothing left to echo


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, echo, port, host=host, backlog=BACKLOG)
            )
            announce(listeners[0].socket)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    args = parse_args(__doc__)
    trio.run(main, args.host, args.port)
