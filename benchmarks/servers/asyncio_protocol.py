"""Echo server: asyncio's default event loop with a Protocol (its fastest API)."""

import asyncio

from _common import BACKLOG, parse_args, serve_until_signalled


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.host, args.port))
