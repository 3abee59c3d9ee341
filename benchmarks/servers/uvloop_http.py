"""HTTP baseline: uvloop + httptools, the pair behind the fastest Python
HTTP servers, running the minimal protocol of ``_http_minimal.py``."""

import asyncio

import uvloop

from _common import BACKLOG, parse_args, serve_until_signalled
from _http_minimal import MinimalHttpProtocol


class HttpProtocol(MinimalHttpProtocol, asyncio.Protocol):
    pass


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(main(args.host, args.port))
