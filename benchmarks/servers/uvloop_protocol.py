"""Echo server: uvloop's event loop with an asyncio Protocol (the reference).

The very same server as asyncio_protocol.py; only the event loop differs."""

import uvloop

from _common import parse_args
from asyncio_protocol import main

if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(main(args.host, args.port))
