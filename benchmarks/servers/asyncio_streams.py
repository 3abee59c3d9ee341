"""Echo server: asyncio's default event loop with streams (read/write/drain)."""

import asyncio

from _common import BACKLOG, parse_args, serve_until_signalled


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away; nothing left to echo
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(echo, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.host, args.port))
