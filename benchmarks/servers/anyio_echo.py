"""Echo server: anyio's TCP listener and streams, on its trio backend."""

import signal

import anyio

from _common import BACKLOG, announce, parse_args


async def echo(stream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive(65536))
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass   # the client went away


async def main(host: str, port: int) -> None:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=BACKLOG)
    announce(listener.extra(anyio.abc.SocketAttribute.raw_socket))
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


if __name__ == "__main__":
    args = parse_args(__doc__)
    anyio.run(main, args.host, args.port, backend="trio")
