"""The HTTP baseline's protocol (uvloop_http.py), line for line, on uringio:
httptools, one callback per request, a fixed response. Beside uvloop_http.py
it measures the loops alone; beside ``serve http`` it measures what
uringio's HTTP layer (routing, Request and Response objects, limits) costs."""

import argparse
import sys
import time
from email.utils import formatdate

import httptools

import uringio

_date = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


class HttpProtocol(uringio.Protocol):
    def connection_made(self, conn):
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self.out = []

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.conn.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
            self.conn.close()
            return
        if self.out:
            self.conn.write(b"".join(self.out))
            self.out.clear()

    def on_message_complete(self):
        body = b"Hello, World!"
        self.out.append(b"HTTP/1.1 200 OK\r\nServer: uringio\r\nDate: %s\r\n"
                        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                        % (http_date(), len(body), body))
        if not self.parser.should_keep_alive():
            self.conn.write(b"".join(self.out))
            self.out.clear()
            self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", default="uring", choices=("uring", "epoll", "auto"))
    args = parser.parse_args()

    def on_listening(server):
        host, port = server.address[:2]
        print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

    uringio.run_server(HttpProtocol, args.host, args.port, backend=args.backend,
                       on_listening=on_listening)
    sys.exit(0)


if __name__ == "__main__":
    main()
