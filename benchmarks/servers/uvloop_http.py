"""HTTP baseline: uvloop + httptools, the pair behind the fastest Python
HTTP servers, written the way their own benchmarks are: a Protocol feeding
httptools, answering "/" with a fixed plaintext response, keep-alive and
pipelining supported, every response of a chunk in one write, the Date
header formatted once a second (formatting it per response would cost this
server more than everything else it does)."""

import asyncio
import time
from email.utils import formatdate

import httptools
import uvloop

from _common import BACKLOG, parse_args, serve_until_signalled


_date = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


class HttpProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.out = []

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()
            return
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def on_message_complete(self):
        body = b"Hello, World!"
        self.out.append(b"HTTP/1.1 200 OK\r\nServer: uvloop\r\nDate: %s\r\n"
                        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                        % (http_date(), len(body), body))
        if not self.parser.should_keep_alive():
            self.transport.write(b"".join(self.out))
            self.out.clear()
            self.transport.close()


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(main(args.host, args.port))
