"""TCP proxy: the minimal asyncio Protocol proxy, on uvloop (the baseline of
proxy_bench.py) or asyncio's own loop.

    python asyncio_proxy.py --loop uvloop|asyncio --to HOST:PORT [--host H --port P]

Each client connection gets an upstream connection; each side's
``data_received`` writes to the other side's transport, with flow control
both ways (a side whose writes back up pauses reading the other) and EOF
passed on as ``write_eof``: what uringio's proxy does, here through Python.
"""

from __future__ import annotations

import argparse
import asyncio

from _common import serve_protocol


class Side(asyncio.Protocol):
    """One side of a proxied pair; ``peer`` is the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        if self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        return True   # keep the other direction open

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()


class Client(Side):
    target: tuple = ()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.early: list[bytes] = []   # what came before the upstream connected
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(Side, *self.target)
        except OSError:
            self.transport.abort()
            return
        upstream.peer, self.peer = self, upstream
        upstream.transport.write(b"".join(self.early))
        self.transport.resume_reading()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    Client.target = (host, int(port))
    if args.loop == "uvloop":
        import uvloop
        uvloop.run(serve_protocol(Client, args.host, args.port))
    else:
        asyncio.run(serve_protocol(Client, args.host, args.port))


if __name__ == "__main__":
    main()
