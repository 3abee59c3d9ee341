#!/usr/bin/env python3
"""Fuzz ``serve http``'s request path: HttpCore (_build/protocols/httpcore.c),
the llhttp glue (_build/http_glue.h) and HTTPProtocol (uringio/protocols/http.py),
fed in process as tests/test_http.py's ``exchange`` does.

Input: ``[seed] + bytes a client sends`` (fuzz/_common.py). The stream goes
to one protocol whole and to another cut where the seed says. The router's
handlers record each request they see and answer by the path: a fixed
response, the body echoed, a handler that raises or returns no Response,
headers and a Content-Type taken from the request (often invalid), odd
statuses, and one that keeps its Request.

Invariants, beyond "no crash" (ASan, UBSan):
* no exception escapes data_received, and no "request handling failed" is
  logged (a fault of the server's own path, answered 500);
* the handlers see the same requests, and the client gets the same bytes,
  whether the stream came whole or in pieces;
* the output is exactly one response per handler call, in order, each with
  the status, body and headers its handler gave (HEAD: no body), framed by
  a right Content-Length, and "Connection: close" last; then at most one
  error response (400, 413, 431, 500) and nothing after it: no byte the
  handlers did not write, no header they did not give, nothing after close;
* a Request a handler keeps is never changed by the requests after it
  (the C path reuses a Request nobody else holds).
"""

from __future__ import annotations

import os
import re
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Finding, Records, check, check_singletons, main, split  # noqa: E402

with atheris.instrument_imports(include=["uringio.protocols"]):
    from uringio.protocols import http as H

H._date[:] = [float("inf"), b"Date: fuzz\r\n"]   # one Date line for every run
MAX_BODY = 2000
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
STATUSES = (200, 201, 204, 301, 404, 418, 500, 599, 299, 999)
LOG = Records("uringio")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
NOT_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Expect:
    """What one handler call must put on the wire."""

    __slots__ = ("seen", "status", "body", "headers", "ctype")

    def __init__(self, request, status=200, body=b"", headers=(),
                 ctype=b"text/plain; charset=utf-8"):
        self.seen = snapshot(request)
        self.status, self.body, self.headers, self.ctype = status, body, list(headers), ctype


def snapshot(request) -> tuple:
    return (request.method, request.url, sorted(request.headers.items()), request.body,
            request.keep_alive, request.version)


class Handlers:
    """The routes; ``calls`` is what each call expects on the wire."""

    def __init__(self) -> None:
        self.calls: list[Expect] = []
        self.kept: list[tuple] = []
        self.fixed = H.Response(b"fixed page")

    def router(self) -> H.Router:
        router = Router(self)
        for path, handler in (("/", self.fixed_page), ("/echo", self.echo), ("/keep", self.keep),
                              ("/raise", self.raises), ("/none", self.no_response),
                              ("/hdr", self.headers), ("/ctype", self.ctype),
                              ("/status", self.status)):
            router.route(path, methods=METHODS)(handler)
        return router

    def fixed_page(self, request):
        self.calls.append(Expect(request, body=b"fixed page"))
        return self.fixed

    def echo(self, request):
        self.calls.append(Expect(request, body=request.body, ctype=b"application/octet-stream"))
        return H.Response(request.body, content_type="application/octet-stream")

    def keep(self, request):
        self.calls.append(Expect(request, body=b"kept"))
        self.kept.append((request, snapshot(request)))
        return H.Response(b"kept")

    def raises(self, request):
        self.calls.append(Expect(request, 500, b"internal server error\n"))
        raise ValueError("a handler that raises, as asked")

    def no_response(self, request):
        self.calls.append(Expect(request, 500, b"internal server error\n"))
        return "not a Response"

    def headers(self, request):
        name = request.headers.get(b"x-name", b"X-Echo").decode("latin-1")
        value = request.headers.get(b"x-echo", b"").decode("latin-1")
        line = (name.encode(), value.encode())
        if TOKEN.match(line[0]) and not NOT_IN_VALUE.search(line[1]):
            self.calls.append(Expect(request, body=b"h", headers=[line]))
        else:
            self.calls.append(Expect(request, 500, b"internal server error\n"))
        return H.Response(b"h", headers=[(name, value)])

    def ctype(self, request):
        ctype = request.headers.get(b"x-ctype", b"text/x-fuzz").decode("latin-1")
        if TOKEN.match(b"Content-Type") and not NOT_IN_VALUE.search(ctype.encode()):
            self.calls.append(Expect(request, body=b"c", ctype=ctype.encode()))
        else:
            self.calls.append(Expect(request, 500, b"internal server error\n"))
        return H.Response(b"c", content_type=ctype)

    def status(self, request):
        status = STATUSES[len(request.url) % len(STATUSES)]
        self.calls.append(Expect(request, status, b"s"))
        return H.Response(b"s", status=status)


class Router(H.Router):
    """The router's own answers (404, 405), recorded as the handlers' are."""

    def __init__(self, handlers: Handlers) -> None:
        super().__init__()
        self.handlers = handlers

    def handle(self, request):
        calls = self.handlers.calls
        before = len(calls)
        # (A URL llhttp takes and httptools.parse_url refuses raises here,
        # and again in _handler_failed's log call: HTTPProtocol answers 400,
        # which check_output takes as the error that ends the output.)
        response = super().handle(request)
        if len(calls) == before:
            headers = [(n.encode(), v.encode()) for n, v in response.headers or ()]
            calls.append(Expect(request, response.status, response.body, headers,
                                response.content_type.encode()))
        return response


class FakeConn:
    """What HTTPProtocol uses of a Connection; refuses writes after close."""

    class loop:
        @staticmethod
        def time():
            return 0.0

        @staticmethod
        def call_later(delay, callback):
            return Timer()

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = self.eof = False

    def write(self, data) -> None:
        check(not self.closed, "a write after close()", bytes(data[:200]))
        check(not self.eof, "a write after write_eof()", bytes(data[:200]))
        self.data += data

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def sendfile(self, *args, **kwargs) -> None:
        raise Finding("sendfile: no route serves a file")


class Timer:
    def cancel(self) -> None:
        pass


def run(pieces: list[bytes]):
    handlers = Handlers()
    conn = FakeConn()
    proto = H.HTTPProtocol(handlers.router(), max_body=MAX_BODY, header_timeout=10.0)
    proto.connection_made(conn)
    for piece in pieces:
        proto.data_received(piece)   # anything it raises is a finding
    check_singletons()
    for record in LOG.take():
        check(not record.getMessage().startswith("HTTP request handling failed"),
              "the server's own path failed (a 500 it logs as its fault)",
              record.getMessage(), record.exc_info)
    for request, seen in handlers.kept:
        check(snapshot(request) == seen, "a kept Request changed after its handler returned",
              seen, snapshot(request))
    return bytes(conn.data), handlers.calls, conn.closed, conn.eof


def parse_response(data: bytes, at: int):
    """(status line, [(name, value)], offset of the body) of the response at ``at``."""
    end = data.find(b"\r\n\r\n", at)
    check(end >= 0, "a response head without its end", data[at:at + 300])
    lines = data[at:end].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        check(bool(sep) and TOKEN.match(name) is not None, "a malformed header line", line)
        headers.append((name, value))
    return lines[0], headers, end + 4


def check_output(data: bytes, calls: list[Expect]) -> None:
    at = 0
    for i, call in enumerate(calls):
        method, _, _, _, keep_alive, version = call.seen
        check(at < len(data), "no response to a request a handler answered", call.seen)
        status_line, headers, body_at = parse_response(data, at)
        # HTTP/1.0 is answered in kind, any other version (0.9, 2.0) in 1.1.
        spoken = b"1.0" if version == "1.0" else b"1.1"
        check(status_line.startswith(b"HTTP/%s %d " % (spoken, call.status)),
              "the wrong status line", status_line, call.seen, call.status)
        names = [name for name, _ in headers]
        values = dict(headers)
        # 204 and 304 go without content (RFC 9110 §8.6, §15.3.5, §15.4.5),
        # whatever the handler gave: no Content-Length, no body.
        no_content = call.status in (204, 304)
        server = [b"Server", b"Date", b"Content-Type", b"Content-Length", b"Connection"]
        app = [name for name, _ in call.headers]
        check(all(name in server or name in app for name in names),
              "a header the handler did not give", headers, call.headers)
        framed = server[:3] if no_content else server[:4]
        check(all(names.count(name) == 1 for name in framed if name not in app)
              and names.count(b"Connection") <= 1, "a server header twice, or missing", headers)
        for line in call.headers:
            check(line in headers, "a header of the handler's missing or changed", line, headers)
        check(values.get(b"Content-Type") == call.ctype, "the wrong Content-Type",
              values.get(b"Content-Type"), call.ctype)
        want_length = None if no_content else b"%d" % len(call.body)
        check(values.get(b"Content-Length") == want_length,
              "the wrong Content-Length", values.get(b"Content-Length"), want_length)
        connection = values.get(b"Connection")
        if not keep_alive:
            check(connection == b"close", "no Connection: close on the last response", headers)
        elif version == "1.0":
            check(connection == b"keep-alive", "HTTP/1.0 keep-alive not said", headers)
        else:
            check(connection is None, "a Connection header on a kept HTTP/1.1 connection", headers)
        body = b"" if method == "HEAD" or no_content else call.body
        check(data[body_at:body_at + len(body)] == body, "a body the handler did not give",
              data[body_at:body_at + len(body) + 50], body[:100])
        at = body_at + len(body)
        if not keep_alive:
            check(at == len(data), "bytes after a response that closed",
                  data[at:at + 200], calls[i + 1:])
            return
    if at == len(data):
        return
    status_line, headers, body_at = parse_response(data, at)
    match = re.match(rb"HTTP/1\.1 (400|413|431|500) ", status_line)
    check(match is not None, "output that is neither a handler's response nor an error",
          data[at:at + 300])
    status = int(match.group(1))
    body = b"%d %s\n" % (status, H._REASONS[status])
    check(dict(headers).get(b"Connection") == b"close", "an error response that does not close")
    # A refused HEAD (as far as the parser read a method) has no content
    # and says so (RFC 9110 §9.3.2; http.py's _fail).
    if dict(headers).get(b"Content-Length") == b"0":
        body = b""
    check(data[body_at:] == body, "bytes after an error response, or the wrong body",
          data[body_at:body_at + 300])


def summary(calls: list[Expect]) -> list[tuple]:
    return [(c.seen, c.status, c.body, c.headers, c.ctype) for c in calls]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    stream = data[1:]
    whole = run([stream] if stream else [])
    cut = run(split(data[0], stream))
    check(summary(whole[1]) == summary(cut[1]) and whole[2:] == cut[2:],
          "the handlers saw other requests, or the connection ended otherwise, in pieces",
          summary(whole[1]), summary(cut[1]), whole[2:], cut[2:])
    check(whole[0] == cut[0], "other bytes written when the requests came in pieces",
          whole[0][:600], cut[0][:600])
    check_output(whole[0], whole[1])


if __name__ == "__main__":
    main(test_one_input)
