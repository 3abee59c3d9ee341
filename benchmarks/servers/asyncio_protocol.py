"""Echo server: asyncio's default event loop with a Protocol (its fastest API)."""

import asyncio

from _common import parse_args, serve_protocol


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(host: str, port: int) -> None:
    await serve_protocol(EchoProtocol, host, port)


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.host, args.port))
