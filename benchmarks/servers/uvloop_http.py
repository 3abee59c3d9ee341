"""HTTP baseline: uvloop + httptools, the pair behind the fastest Python
HTTP servers, running the minimal protocol of ``_http_minimal.py``."""

import asyncio

import uvloop

from _common import parse_args, serve_protocol
from _http_minimal import MinimalHttpProtocol


class HttpProtocol(MinimalHttpProtocol, asyncio.Protocol):
    pass


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(serve_protocol(HttpProtocol, args.host, args.port))
