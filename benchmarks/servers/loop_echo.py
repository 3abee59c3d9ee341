"""Echo server: the same asyncio code on the event loop named by --loop.

    --loop uringio-uring | uringio-epoll | uvloop | rloop | asyncio
    --api protocol | streams

``protocol`` is asyncio_protocol.py's Protocol, ``streams`` is
asyncio_streams.py's reader/writer loop: only the event loop differs
between the runs of one API."""

import argparse
import asyncio
from collections.abc import Callable

import asyncio_protocol
import asyncio_streams


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name.startswith("uringio-"):
        import uringio
        backend = name.split("-", 1)[1]
        return lambda: uringio.new_event_loop(backend)
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    if name == "rloop":
        import rloop
        return rloop.new_event_loop
    return asyncio.new_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--api", choices=("protocol", "streams"), default="protocol")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = asyncio_protocol if args.api == "protocol" else asyncio_streams
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(server.main(args.host, args.port))


if __name__ == "__main__":
    main()
