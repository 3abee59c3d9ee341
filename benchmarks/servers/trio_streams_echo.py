"""Echo server: trio_echo.py's handler on uringio.trio's streams -- its
serve_tcp, the stream's receive_some and send_all on completions."""

import functools
import os
import signal

import trio

import uringio.trio
from _common import BACKLOG, announce, parse_args
from trio_echo import echo


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(uringio.trio.serve_tcp, echo, port, host=host, backlog=BACKLOG)
            )
            announce(listeners[0].socket)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    args = parse_args(__doc__)
    uringio.trio.run(main, args.host, args.port,
                     backend=os.environ.get("URINGIO_BACKEND", "auto"))
