"""The minimal HTTP protocol of the HTTP baselines, written the way the
fastest Python HTTP servers' own benchmarks are: httptools with one callback
per request, "/" answered with a fixed plaintext response, keep-alive and
pipelining, every response of a chunk in one write, and the Date header
formatted once a second (formatting it per response would cost this server
more than everything else it does).

It needs only ``write`` and ``close`` of what ``connection_made`` hands it,
which an asyncio transport and a uringio Connection both have: the uvloop
baseline and its uringio twin mix it into their own Protocol class and run
this very code."""

import time
from email.utils import formatdate

import httptools

_date = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


class MinimalHttpProtocol:
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
        self.out.append(b"HTTP/1.1 200 OK\r\nServer: minimal\r\nDate: %s\r\n"
                        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                        % (http_date(), len(body), body))
        if not self.parser.should_keep_alive():
            self.transport.write(b"".join(self.out))
            self.out.clear()
            self.transport.close()
