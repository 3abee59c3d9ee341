#!/usr/bin/env python3
"""Fuzz the ASGI server's request path: AsgiCore and Cycle
(_build/asgi/asgicore.c), the llhttp glue (_build/http_glue.h) and HttpProtocol
and RequestCycle (uringio/asgi/http.py), in process on an asyncio loop, as
tests/test_asgi.py's ``_in_process`` feeds them.

Input: ``[seed] + bytes a client sends`` (fuzz/_common.py). The app's
behaviour is read from the request itself, so the fuzzer mutates it along
with the bytes: each character of the path's last segment is a step --
  r  receive() once            R  receive() until the body is all read
  w  wait a loop turn          W  wait three
  x  raise                     q  return now
  h  start, with a header      s  start, with an odd status (204, 304, 999...)
  H  start, with the value of the request's x-v header as a header's value
  N  start, with the request's x-n header as a header's name
  c  start, with connection: close     l  start, with the right content-length
  b  a body piece, more to come        k  an empty piece, more to come
  e  the last piece, b"end"            E  the end, with no body key
(a body step before any start is sent as it is, which the server refuses).
The stream goes to one protocol whole, and to another in pieces cut where
the seed says, each piece from a loop callback with turns between them.

Invariants, beyond "no crash" (ASan, UBSan):
* nothing escapes data_received or the loop's callbacks, and nothing is
  logged as the server's own failure ("handling a request's head failed");
* no write after the transport is closed; once the client has gone, every
  app task ends (none is left waiting forever);
* the apps see the same requests, and the client gets the same bytes, fed
  whole or in pieces -- where no parse error or limit stopped either run,
  and no app went on with its body read in part (those are seen at a point
  that depends on the cut, legitimately: an app that reads one piece finds
  the rest read or not, waits or not, and fails with a body unread or not);
* every response on the wire is an app's, in order, with its status, its
  headers exactly (plus only date, server, content-length,
  transfer-encoding, connection) and a body that is exactly the bytes it
  sent, framed as its headers say (none after HEAD, 204 or 304) -- or the
  server's own (100 Continue, or an error "NNN Reason" that closes, or the
  500 of an app that failed, a 1xx status among its failures); a response
  cut short only by a reset.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Records, check, check_singletons, main, split  # noqa: E402

with atheris.instrument_imports(include=["uringio.asgi"]):
    from uringio.asgi import http as A

DATE = b"date: fuzz\r\nserver: uringio\r\n"
ODD_STATUSES = (204, 304, 999, 201, 404, 100, 500, 299)
SERVER_HEADERS = {b"date", b"server", b"content-length", b"transfer-encoding", b"connection"}
LOG = Records("uringio")


class NoWaitSelector(selectors.EpollSelector):
    """The loop's selector, less the epoll_wait of each turn that cannot
    wait (nothing here is a real fd: a turn's poll finds nothing, and took
    a third of the harness's time)."""

    def select(self, timeout=None):
        if timeout is not None and timeout <= 0:
            return []
        return super().select(timeout)


LOOP = asyncio.SelectorEventLoop(NoWaitSelector())
asyncio.set_event_loop(LOOP)


class Run:
    """One connection's worth: what the apps did and what was written."""

    def __init__(self) -> None:
        self.apps: list[App] = []
        self.out = bytearray()
        # reset: the connection was reset, or the client left, with a
        # response unfinished (it may end short)
        self.closed = self.reset = self.eof = self.upgraded = False
        self.stopped = False   # a parse error or a limit stopped the parser
        self.partial = False   # an app went on with a body read in part (see app())
        self.errors: list = []


class App:
    """One request's app, and what it did."""

    def __init__(self, run: Run, scope) -> None:
        self.run = run
        self.seen = (scope["type"], scope.get("method"), scope.get("path"), scope.get("raw_path"),
                     scope.get("query_string"), scope.get("http_version"),
                     list(scope.get("headers", ())))
        self.head = scope.get("method") == "HEAD"
        self.status = 200
        self.headers: list = []
        self.bodies: list[bytes] = []   # body bytes sent without an error
        self.head_written = self.complete = False
        self.read = bytearray()
        self.read_all = False

    def summary(self) -> tuple:
        # (what one receive() returns depends on the cut: only a body read
        # to its end is the same)
        return (self.seen, self.status, self.headers, self.bodies, self.complete,
                bytes(self.read) if self.read_all else None)


async def app(scope, receive, send):
    run = CURRENT
    me = App(run, scope)
    run.apps.append(me)
    if scope["type"] != "http":
        await receive()
        await send({"type": "websocket.close"})
        return
    headers = dict(scope["headers"])
    program = scope["raw_path"].rsplit(b"/", 1)[-1][:16]
    # The body the program sends, for "l"'s content-length: its pieces up to
    # the last one (the app's own framing must be right for the check).
    plan = 0
    for i, c in enumerate(program):
        plan += {ord("b"): len(b"b%d" % i), ord("e"): 3}.get(c, 0)
        if c in b"eE":
            break
    more = True
    started = False
    for i, step in enumerate(program):
        step = chr(step)
        if step in "rR":
            while more:
                message = await receive()
                more = message.get("more_body", False)
                if message["type"] == "http.disconnect":
                    run.partial = True   # the body never came whole
                me.read += message.get("body", b"")
                if step == "R" and not more:
                    me.read_all = message["type"] == "http.request"
                if step == "r":
                    break
            if more:
                # The app goes on with the body read in part: how much
                # one receive() returned, and so what the app then finds
                # (the rest read or not, a receive() that waits) and what
                # the server answers its failure with (connection: close
                # while a body is unread), depends on the cut.
                run.partial = True
        elif step in "wW":
            for _ in range(1 if step == "w" else 3):
                await asyncio.sleep(0)
        elif step == "x":
            raise RuntimeError("the app raises, as asked")
        elif step == "q":
            return
        elif step in "hsHNcl" and not started:
            started = True
            if step == "s":
                me.status = ODD_STATUSES[i % len(ODD_STATUSES)]
            extra = {"h": [(b"x-app", b"1")], "H": [(b"x-odd", headers.get(b"x-v", b""))],
                     "N": [(headers.get(b"x-n", b"x-n"), b"v")],
                     "c": [(b"connection", b"close")],
                     "l": [(b"content-length", b"%d" % plan)]}.get(step, [])
            me.headers = extra
            await send({"type": "http.response.start", "status": me.status, "headers": extra})
        elif step in "bkeE":
            message = {"type": "http.response.body"}
            if step != "E":
                message["body"] = {"b": b"b%d" % i, "k": b"", "e": b"end"}[step]
            if step in "bk":
                message["more_body"] = True
            await send(message)
            me.head_written = True
            me.bodies.append(message.get("body", b""))
            if step in "eE":
                me.complete = True


CURRENT: Run = Run()


class Transport:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.protocol = None

    def write(self, data) -> None:
        # (recorded, not raised: the server would take a raise for the app's)
        if self.run.closed or self.run.eof:
            self.run.errors.append({
                "message": "a write after the transport was closed or its write side shut",
                "exception": bytes(data[:200])})
        self.run.out += data

    def close(self) -> None:
        if not self.run.closed:
            self.run.closed = True
            LOOP.call_soon(self.protocol.connection_lost, None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.run.eof = True

    def abort(self) -> None:
        self.run.reset = True
        self.close()

    def is_closing(self) -> bool:
        return self.run.closed

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol) -> None:
        self.run.upgraded = True   # a WebSocket's from here: its answer ends the check
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol


class Protocol(A.HttpProtocol):
    def _input_failed(self, exc, data) -> None:
        CURRENT.stopped = True
        super()._input_failed(exc, data)


async def turns(most: int) -> None:
    """``most`` loop turns, fewer when nothing is left to run before: a
    turn then changes nothing (no fd here is real, and no timer is set),
    and such turns took most of the harness's time."""
    for _ in range(most):
        await asyncio.sleep(0)
        if not LOOP._ready and not LOOP._scheduled:
            return


async def settle() -> None:
    """What the server and the apps do next waits on the client alone."""
    await turns(30)


async def session(run: Run, pieces: list[bytes], between: int) -> None:
    server = A.ServerState(app, max_body=2000, max_head=2048)
    server.date_line = server.date_cell[0] = DATE
    proto = Protocol(server)
    transport = Transport(run)
    transport.protocol = proto
    proto.connection_made(transport)
    for piece in pieces:
        if run.closed:
            break
        # As a loop delivers it: from a callback, not inside a task (the C
        # path starts the app eagerly only there).
        LOOP.call_soon(transport.protocol.data_received, piece)
        await turns(between)
    await settle()
    if not run.closed:
        transport.protocol.eof_received()
        await settle()
    if not run.closed:
        # The client leaves: what was cut short then is cut short, as by a reset.
        run.closed = run.reset = True
        transport.protocol.connection_lost(None)
    await settle()
    left = [task for task in server.tasks if not task.done()]
    check(not left, "app tasks still waiting after the client left", left)


def exception_handler(loop, context) -> None:
    CURRENT.errors.append(context)


LOOP.set_exception_handler(exception_handler)


def run(pieces: list[bytes], between: int) -> Run:
    global CURRENT
    CURRENT = result = Run()
    LOOP.run_until_complete(session(result, pieces, between))
    check_singletons()
    check(not result.errors, "an exception escaped into the loop",
          [(c.get("message"), c.get("exception")) for c in result.errors])
    for record in LOG.take():
        check("handling a request's head failed" not in record.getMessage(),
              "the server's own path failed (a 500 it logs as its fault)",
              record.getMessage(), record.exc_info)
    return result


# -- the output ------------------------------------------------------------------

def parse_head(data: bytes, at: int):
    end = data.find(b"\r\n\r\n", at)
    if end < 0:
        return None
    lines = data[at:end].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        check(bool(sep), "a malformed header line", line, data[at:end + 4])
        headers.append((name, value))
    return lines[0], headers, end + 4


def server_body(status: int) -> bytes:
    import http
    try:
        return b"%d %s\n" % (status, http.HTTPStatus(status).phrase.encode())
    except ValueError:
        return b""


def check_output(r: Run) -> None:
    data = bytes(r.out)
    answered = [a for a in r.apps if a.head_written]
    at = 0
    while at < len(data):
        parsed = parse_head(data, at)
        if parsed is None:
            check(r.reset, "a response head cut short without a reset", data[at:at + 300])
            return
        status_line, headers, body_at = parsed
        match = re.match(rb"HTTP/\d\.\d (\d{3}) ", status_line)
        check(match is not None, "not a status line", status_line)
        status = int(match.group(1))
        if status_line == b"HTTP/1.1 100 Continue" and not headers:
            at = body_at
            continue
        names = {name.lower() for name, _ in headers}
        fields = {name.lower(): value for name, value in headers}
        own = server_body(status)
        if (answered and answered[0].status == status and
                all(pair in headers for pair in answered[0].headers
                    if pair[0].lower() != b"transfer-encoding")):
            a = answered.pop(0)
            check(all(name.lower() in SERVER_HEADERS or (name, value) in a.headers
                      for name, value in headers), "a header the app did not give",
                  headers, a.headers)
            # No content after a HEAD, a 204 or a 304, whatever the app gave.
            want = b"" if a.head or status in (204, 304) else b"".join(a.bodies)
            if a.head or status in (204, 304):
                body, at = b"", body_at
            elif fields.get(b"transfer-encoding") == b"chunked":
                body, at = dechunk(data, body_at, r.reset)
            elif b"content-length" in fields:
                n = int(fields[b"content-length"])
                body, at = data[body_at:body_at + n], body_at + n
            else:
                check(fields.get(b"connection") == b"close", "a body with no framing", headers)
                body, at = data[body_at:], len(data)
            if a.complete and not r.reset:
                check(body == want, "a body that is not the bytes the app sent", body[:200],
                      want[:200], a.summary())
            else:
                check(want.startswith(body) or body.startswith(want),
                      "a body that is not the bytes the app sent", body[:200], want[:200])
            if fields.get(b"connection") == b"close":
                check(at == len(data), "bytes after a response that closed", data[at:at + 200])
            continue
        if r.upgraded:
            return   # the WebSocket handshake's answer (101, 403, 426...): websocket.py's
        # The server's own answer: an error that closes (_refuse), or the 500
        # of an app that failed before its head was written (_abandon: it
        # keeps the connection unless the request's body is unread, and has
        # no body for a HEAD request).
        check(own != b"" and fields.get(b"content-length") == b"%d" % len(own),
              "a response that is neither an app's nor the server's", data[at:at + 300],
              [a.summary() for a in answered[:1]])
        check(names <= SERVER_HEADERS | {b"content-type"}, "extra headers on the server's answer",
              headers)
        closes = fields.get(b"connection") == b"close"
        check(closes or status == 500, "a server's error that does not close", headers)
        if data[body_at:body_at + len(own)] == own:
            at = body_at + len(own)
        else:
            check(status == 500 and any(a.head and not a.head_written for a in r.apps),
                  "the server's answer with another body", data[at:at + 300])
            at = body_at
        if closes:
            check(at == len(data), "bytes after a response that closed", data[at:at + 200])


def dechunk(data: bytes, at: int, reset: bool):
    body = bytearray()
    while True:
        nl = data.find(b"\r\n", at)
        if nl < 0:
            check(reset, "a chunked body cut short without a reset", data[at:at + 100])
            return bytes(body), len(data)
        size = int(data[at:nl], 16)
        chunk = data[nl + 2:nl + 2 + size]
        if size == 0:
            check(data[nl:nl + 4] == b"\r\n\r\n", "a bad last chunk", data[at:at + 20])
            return bytes(body), nl + 4
        if len(chunk) < size or data[nl + 2 + size:nl + 4 + size] != b"\r\n":
            check(reset, "a chunk cut short without a reset", data[at:at + 100])
            return bytes(body + chunk), len(data)
        body += chunk
        at = nl + 4 + size


def test_one_input(data: bytes) -> None:
    if not data:
        return
    stream = data[1:]
    whole = run([stream] if stream else [], 3)
    check_output(whole)
    cut = run(split(data[0], stream), 3)
    check_output(cut)
    if not (whole.stopped or cut.stopped or whole.partial or cut.partial):
        check([a.summary() for a in whole.apps] == [a.summary() for a in cut.apps],
              "the apps saw or did other things when the requests came in pieces",
              [a.summary() for a in whole.apps], [a.summary() for a in cut.apps])
        check(whole.out == cut.out and whole.reset == cut.reset,
              "other bytes written when the requests came in pieces", bytes(whole.out[:600]),
              bytes(cut.out[:600]))


if __name__ == "__main__":
    main(test_one_input)
