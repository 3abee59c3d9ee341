"""HTTP/1.1 for ASGI apps: the ``http`` scope on an asyncio transport.

One ``HttpProtocol`` per connection parses with llhttp; each request
becomes a ``RequestCycle`` whose ``receive`` and ``send`` the app awaits.
Requests are answered one at a time, in order: a pipelined request waits
for the response before it to complete (its body, if any, is buffered
meanwhile, and reading pauses when too much waits). On uringio's loop the
transport is the engine's connection, so writes are coalesced per loop
turn and a ``pathsend`` file goes out by splice (uring) or sendfile
(epoll), never through Python.

What a server must decide, decided here:
* a response with no Content-Length whose body comes in one message gets
  one; otherwise HTTP/1.1 gets chunked encoding and HTTP/1.0 a close;
* an app that raises before starting its response gets a 500, one that
  raises after gets its connection reset (a response cut short must not
  look complete); both are logged;
* limits as ``serve http``'s: 400 for what does not parse, 413 for a body
  over ``max_body`` (refused from its Content-Length, before reading it),
  431 for a head over ``max_head``, 408 for a head not complete within
  ``header_timeout``; an idle keep-alive connection closes after
  ``keep_alive`` seconds.
"""

from __future__ import annotations

import _asyncio
import asyncio
import http
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httptools

from ..net.connection import Connection
from ..protocols.fields import NO_CONTENT_STATUSES, check_field, is_final_status
from ..protocols.http import LINGER_TIMEOUT, RequestLimit
from ._asgicore import BODY_APART, AsgiCore, Cycle, setup
from .eager import EagerTask, Resumed, adopt, run_eagerly
from .flow import WriteFlow
from .forwarded import TrustedProxies, forwarded
from .lifespan import ASGI_VERSION
from .metrics import WorkerMetrics

log = logging.getLogger("uringio.asgi")
access_log = logging.getLogger("uringio.asgi.access")

# Request body bytes buffered, not yet received by the app, above which
# reading pauses; and pipelined requests waiting, likewise.
BODY_HIGH_WATER = 256 * 1024
PATHSEND_PIECE = 256 * 1024   # a pathsend file's piece, through a transport that encrypts
PIPELINE_HIGH_WATER = 32

# The final statuses (an app's response cannot be informational: a client
# would read it as interim, and the next response as this one's).
_STATUS_LINES = {
    version: {status.value: b"HTTP/%s %d %s\r\n" % (version.encode(), status.value,
                                                    status.phrase.encode())
              for status in http.HTTPStatus if status.value >= 200}
    for version in ("1.1", "1.0")
}
_CHUNK_END = b"0\r\n\r\n"


def _status_line(version: str, status: int) -> bytes:
    """The status line of a response to a request in ``version``: HTTP/1.0
    answered in kind, any other (1.1, or 0.9 and 2.0 that llhttp takes) in
    1.1. RuntimeError for what is not a final status (200-999)."""
    version = "1.0" if version == "1.0" else "1.1"
    line = _STATUS_LINES[version].get(status)
    if line is None:
        if not is_final_status(status):
            raise RuntimeError(f"the response's status must be an int from 200 to 999, "
                               f"not {status!r}")
        line = b"HTTP/%s %d \r\n" % (version.encode(), status)
    return line


class ServerState:
    """What the connections of one worker share: the app, its settings,
    the lifespan state, and the connections and tasks alive (for
    ``limit_concurrency`` and for a drain on shutdown)."""

    def __init__(self, app, *, root_path: str = "", max_body: int = 1 << 30,
                 max_head: int = 64 * 1024, header_timeout: float = 10.0,
                 keep_alive: float = 5.0, limit_concurrency: int | None = None,
                 access_log: bool | str = False, proxy_headers: bool = False,
                 forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",),
                 ws_max_message: int = 16 * 1024 * 1024, state: dict | None = None) -> None:
        self.app = app
        self.root_path = root_path
        self.max_body = max_body
        self.max_head = max_head
        self.header_timeout = header_timeout
        self.keep_alive = keep_alive
        self.limit_concurrency = limit_concurrency
        # True, or a format (ACCESS_FIELDS): a line per request, logged by
        # response_done; the C path then leaves each request's start and
        # end to Python (start() notes the time).
        self.access_log = (ACCESS_LOG_FORMAT if access_log is True else access_log) or None
        self.proxy_headers = proxy_headers
        self.trusted_proxies = TrustedProxies(forwarded_allow_ips)
        self.ws_max_message = ws_max_message
        # --limit-max-requests: how many more requests this worker starts
        # before ``retire()`` (the Server's) stops it; None: no limit.
        self.requests_left: int | None = None
        self.retire: Callable[[], None] | None = None
        self.metrics: WorkerMetrics | None = None   # --metrics-port: what is counted
        self.stopping = False   # set once the server stops accepting
        self.retiring = False   # ... while other workers serve on (a rolling restart)
        self.state = state if state is not None else {}
        self.connections: set = set()   # HttpProtocol and WebSocketProtocol
        self._sweeper: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task] = set()
        self._date_second = 0
        self.date_line = b""
        self.date_cell = [b""]   # date_line, for the C send path (_asgicore) to read
        self.refresh_date()

    def spawn(self, loop: asyncio.AbstractEventLoop, coro) -> None:
        """Run an app's ``coro``: at once, when called outside a task (from
        a protocol callback), and as a task only if it has to wait
        (eager.py); from inside a task, as a task. The tasks are what a
        shutdown drains (``tasks``)."""
        if asyncio.current_task(loop) is None:
            try:
                task = run_eagerly(loop, coro)
            except asyncio.CancelledError:
                return   # (the app cancelled itself; RequestCycle.run has answered)
            if task is None:
                return
        else:
            task = loop.create_task(coro)
        self.track(task)

    def track(self, task: asyncio.Task) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def busy(self, limit: int, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``limit`` requests or more are running. Not counted: a
        task that has finished (it stays in ``tasks`` until its done
        callback runs, a turn later, when a keep-alive client's next
        request may be in already), and the task this runs in (its
        response is all written: the next request pipelined behind it
        starts from there)."""
        tasks = self.tasks
        if len(tasks) < limit:
            return False
        current = asyncio.current_task(loop)
        return sum(not task.done() and task is not current for task in tasks) >= limit

    def start_sweeping(self, loop: asyncio.AbstractEventLoop) -> None:
        """Check the connections' deadlines from now on, often enough that
        none fires more than a quarter of its timeout late."""
        period = min(1.0, self.header_timeout / 4, self.keep_alive / 4)

        def sweep() -> None:
            now = loop.time()
            self.refresh_date()
            for conn in list(self.connections):
                deadline = getattr(conn, "deadline", 0.0)
                if deadline and deadline <= now:
                    conn.deadline = 0.0
                    conn.on_deadline()
            self._sweeper = loop.call_later(period, sweep)

        self._sweeper = loop.call_later(period, sweep)

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def refresh_date(self) -> None:
        """Make ``date_line``, the Date and Server lines every response
        carries, for the current second (the sweep calls it, at least once
        a second: a request reads an attribute, not the clock)."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self.date_line = b"date: %s\r\nserver: uringio\r\n" % (
                time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode())
            self.date_cell[0] = self.date_line


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI 2.4: an OSError, so that
    an app streaming to nobody stops)."""


setup(limit=RequestLimit, asgi_version=ASGI_VERSION, status_lines=_STATUS_LINES,
      unquote=unquote, task_type=EagerTask, current_tasks=getattr(_asyncio, "_current_tasks", None),
      cancelled_error=asyncio.CancelledError, future_type=asyncio.Future,
      future_finish=asyncio.Future.set_result, parser_error=httptools.HttpParserError,
      parser_upgrade=httptools.HttpParserUpgrade)


class HttpProtocol(WriteFlow, AsgiCore, asyncio.Protocol):
    """The server side of one HTTP/1.1 connection for an ASGI app.

    Its per-request path is AsgiCore's, in C (_build/asgi/asgicore.c):
    llhttp (vendored, called from C) and the callbacks that turn a head of
    the common kind into its scope and RequestCycle, and the app's
    ``send``. (httptools lends only its exception classes, which llhttp's
    errors are raised as, and its URL parser.) What it leaves to
    Python is here: the connection, other heads (``_head_slow``), errors,
    and the order of requests."""

    # AsgiCore's, in C: parser, transport, url, headers (the head so far),
    # head_bytes, cycle (the request being answered), parsing (the request
    # whose body arrives now), client, sockname, scheme, closing, write_paused, and
    # the deadline: when the connection's timeout falls due (the server's
    # clock, 0: none), the head's (408) if deadline_head, else the idle one.

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.pipeline = deque()   # parsed, waiting their turn
        # The app AsgiCore starts eagerly; None: start() starts each request
        # (to count it against limit_concurrency or limit_max_requests).
        self._app = (server.app if server.limit_concurrency is None
                     and server.requests_left is None and not server.access_log
                     and server.metrics is None else None)
        self.started_at = 0.0   # (access log, metrics) when the request in turn started
        self._keep_alive = server.keep_alive
        # (C's flag: True, each response's end goes through response_done)
        self._access_log = server.access_log is not None or server.metrics is not None
        self._root_path = server.root_path
        self._state = server.state
        self._max_head = server.max_head
        self._max_body = server.max_body
        self._header_timeout = server.header_timeout
        self._date_line = server.date_cell
        self._cycle_type = RequestCycle
        self.init_flow()
        self.reading_paused = False
        self.pending_error = 0    # a status to answer once the response in flight is out
        self.client_eof = False
        self.upgrade: tuple | None = None   # a WebSocket request's scope, headers, raw path

    # -- the connection --------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.client = tuple(peer[:2]) if isinstance(peer, tuple) else None
        # A trusted proxy's X-Forwarded-* headers send its heads to _head_slow.
        self.trust_forwarded = (self.server.proxy_headers and self.client is not None
                                and self.client[0] in self.server.trusted_proxies)
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"   # (the C path's scope reads it; "wss" for WebSockets)
        sock = transport.get_extra_info("sockname")
        # A Unix socket's is its path: the scope's server is then [path, None].
        self.sockname = (tuple(sock[:2]) if isinstance(sock, tuple)
                         else (sock, None) if isinstance(sock, str) and sock else None)
        self._arm_idle()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self._disarm()
        for cycle in (self.cycle, *self.pipeline):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        self.pipeline.clear()
        self.release_drain()

    # data_received is AsgiCore's: it parses with llhttp, and hands here
    # what stopped the parser: a limit broken, an upgrade, what did not
    # parse, or what one of its callbacks raised.

    def _input_failed(self, exc: BaseException, data: bytes) -> None:
        if isinstance(exc, RequestLimit):
            self._refuse(exc.status)
        elif isinstance(exc, httptools.HttpParserUpgrade):
            if self.upgrade is not None and not self.closing:
                # (not behind a response that closed the connection)
                self._to_websocket(data[exc.args[0]:])
            # Any other upgrade (h2c, ...) is answered as what it also is,
            # an HTTP request, and the connection closes after it.
        elif isinstance(exc, httptools.HttpParserError):
            self._refuse(400)
        elif isinstance(exc, Exception):
            # The server's own fault, not the request's (what an app raises
            # is its request's, answered there): logged, and a 500.
            log.error("handling a request's head failed", exc_info=exc)
            self._refuse(500)
        else:
            raise exc   # an exit or interrupt goes on

    def eof_received(self) -> bool | None:
        # The client sent all it will: the requests it sent are answered,
        # then the connection closes.
        self.client_eof = True
        parsing = self.parsing
        if parsing is not None and parsing.more_body:
            # It ended inside a body: the rest cannot come, so the request
            # cannot be answered as asked. Closing tells its app the client
            # is gone (connection_lost: receive says http.disconnect).
            return None
        return None if self.cycle is None else True

    # Timeouts are deadlines that ServerState's sweep checks a few times a
    # second, not a loop timer each: arming and cancelling two timers per
    # request was a tenth of a request's cost (a heap push, a cancel, a
    # TimerHandle each).

    def _arm_idle(self) -> None:
        self.deadline = self.loop.time() + self._keep_alive
        self.deadline_head = False

    def _disarm(self) -> None:
        self.deadline = 0.0

    def on_deadline(self) -> None:
        if self.deadline_head:
            self._refuse(408)
        elif self.cycle is None and not self.closing:
            self.close()

    def reset(self) -> None:
        """Close with a reset, even when all that was sent is out: a
        response cut short must not end like a whole one. (uringio's
        connection resets; asyncio's transports have abort.)"""
        self.closing = True
        assert self.transport is not None
        getattr(self.transport, "reset", self.transport.abort)()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.transport is not None
            self.transport.close()

    def shutdown(self, retiring: bool = False) -> None:
        """The server is stopping: close after the response in flight, or
        now if idle. A worker that retires while others serve on (SIGHUP,
        limit_max_requests) keeps an idle connection for one more request
        instead, answered as the last: the client may have sent it already,
        and closing under it would lose it."""
        if retiring:
            self._app = None   # every request through start(), which makes it the last
        if self.cycle is not None:
            self.cycle.keep_alive = False
            self.pipeline.clear()
        elif not retiring:
            self.close()

    def _refuse(self, status: int) -> None:
        # Answer an error and close: now, or after the response in flight.
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle is not self.parsing or not cycle.more_body:
                # The response in flight goes out as it would (keep-alive or
                # not, its own affair), then those of the requests pipelined
                # behind it, in order (RFC 9112 §9.3.2), then the error:
                # unless one of them said connection: close, after which the
                # client reads nothing (RFC 9112 §9.6), so nothing more is
                # written (response_done). A pipelined request whose own
                # body failed cannot be answered as asked: the error takes
                # its place.
                parsing = self.parsing
                if parsing is not None and parsing.more_body and parsing in self.pipeline:
                    self.pipeline.remove(parsing)
                self.pending_error = status
                self._set_reading(False)
                return
            # The error is in the body of the request being answered (too
            # large, malformed), which its app may be waiting for: the rest
            # will not come. To the app the client is gone (receive says
            # http.disconnect, send raises); the error is answered now, or,
            # with the response begun, the connection is reset -- a
            # response cut short must not look complete.
            cycle.disconnected = True
            cycle.wake()
            if cycle.response_started:
                self.reset()
                return
        self._disarm()
        # A refused HEAD gets no content (RFC 9110 §9.3.2; http.py's _fail).
        head = self.parsed_head()[1] == "HEAD"
        body = b"" if head else b"%d %s\n" % (status, http.HTTPStatus(status).phrase.encode())
        self._linger(_status_line("1.1", status) + self.server.date_line
                     + b"content-type: text/plain; charset=utf-8\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))

    def _linger(self, last: bytes) -> None:
        """Write ``last`` and close, lingering (_Lingering) where the
        transport can shut its write side."""
        transport = self.transport
        assert transport is not None
        if self.closing:
            return
        if last:
            transport.write(last)
        if not transport.can_write_eof():
            self.close()
            return
        self.closing = True
        transport.write_eof()
        transport.set_protocol(_Lingering(self, transport))
        transport.resume_reading()

    def _set_reading(self, on: bool) -> None:
        if self.closing or self.transport is None:
            return
        if on and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        elif not on and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def update_reading(self) -> None:
        """Read unless too much waits: body bytes the app has not taken,
        or pipelined requests."""
        parsing = self.parsing
        self._set_reading(not self.pending_error and len(self.pipeline) < PIPELINE_HIGH_WATER
                          and (parsing is None or len(parsing.body) < BODY_HIGH_WATER))

    # -- the parser's callbacks -------------------------------------------------

    # llhttp calls AsgiCore's C back as it parses: the start of a head arms
    # its deadline, each piece of it counts against the head's size (414,
    # 431), a Content-Length is checked (400, 413), and a complete head
    # becomes the scope and RequestCycle of an origin-form request without
    # an Upgrade header -- or, for any other, is _head_slow's. A body's
    # pieces are on_body's.

    def _head_slow(self) -> None:
        server = self.server
        version, method, upgrade, parser_keep_alive = self.parsed_head()
        raw_url, self.url = self.url, b""   # the next request's head starts with its URL
        headers, self.headers = self.headers, []
        try:
            url = httptools.parse_url(raw_url)
        except httptools.HttpParserInvalidURLError:
            raise RequestLimit(400) from None
        raw_path = url.path or b"/"   # http://host:port has none: RFC 9112 §3.2.2
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        client, scheme = self.client, self.scheme
        expect_100 = False
        for name, value in headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise RequestLimit(400) from None
                if length > server.max_body:
                    raise RequestLimit(413)   # refused before a byte of it is read
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_100 = True
        if self.trust_forwarded:
            client, scheme = forwarded(headers, client, scheme, server.trusted_proxies)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": dict(ASGI_VERSION),
            "http_version": version,
            "server": self.sockname,
            "client": client,
            "scheme": scheme,
            "method": method,
            "root_path": server.root_path,
            "path": server.root_path + path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": headers,
            "state": server.state.copy(),
            "extensions": {"http.response.pathsend": {}},
        }
        if upgrade:
            if any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers):
                if self.cycle is not None or self.pipeline:
                    raise RequestLimit(400)   # an upgrade behind pipelined requests: refused
                scope["type"] = "websocket"
                scope["scheme"] = "wss" if scheme == "https" else "ws"
                del scope["method"]
                scope["extensions"] = {}
                self.upgrade = (scope, headers, raw_url)
                self.parsing = None   # (it has no body: its message ends here)
                return
            parser_keep_alive = False
        cycle = RequestCycle(self, scope, parser_keep_alive, expect_100)
        # As the C path sets it: a body is coming only if the head says so
        # (it had been True for every head here, so an app that failed at once
        # closed the connection as if its body were left unread).
        cycle.more_body = self.body_follows
        self.parsing = cycle
        self._new_request(cycle)

    def _new_request(self, cycle: RequestCycle) -> None:
        if self.closing:
            return   # after a response that closes the connection: not answered
        if self.cycle is None:
            self.start(cycle)
        else:
            self.pipeline.append(cycle)
            self.update_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None:
            raise RequestLimit(400)   # a body on a WebSocket upgrade request
        cycle.received += len(body)
        if cycle.received > self.server.max_body:
            raise RequestLimit(413)
        if cycle.disconnected or cycle.response_complete:
            return   # nobody will read it
        waiter = cycle.waiter
        if waiter is not None and not waiter.done() and not cycle.body:
            # The app waits in receive() with nothing before this: it gets
            # these very bytes (a large body's chunk is then copied by
            # nobody here, rather than into the bytearray and out again).
            waiter.set_result(body)
            return
        cycle.body += body
        cycle.wake()
        if len(cycle.body) >= BODY_HIGH_WATER:
            self.update_reading()

    def _to_websocket(self, rest: bytes) -> None:
        # The upgrade request is parsed: the connection is the WebSocket
        # protocol's from here on (websocket.py).
        from .websocket import WebSocketProtocol

        assert self.upgrade is not None and self.transport is not None
        scope, headers, url = self.upgrade
        self._disarm()
        self.server.connections.discard(self)
        protocol = WebSocketProtocol(self.server, scope, self.server.ws_max_message)
        self.transport.set_protocol(protocol)
        protocol.start(self.transport, headers, url, rest)

    # -- requests, in order ----------------------------------------------------

    def start(self, cycle: RequestCycle) -> None:
        self.cycle = cycle
        server = self.server
        if server.access_log or server.metrics is not None:
            self.started_at = self.loop.time()
        if server.stopping:
            cycle.keep_alive = False   # the last on this connection: answered, then closed
        app = server.app
        limit = server.limit_concurrency
        if limit is not None and (len(server.connections) > limit
                                  or server.busy(limit, self.loop)):
            app = _service_unavailable
        if server.requests_left is not None:
            server.requests_left -= 1
            if server.requests_left == 0 and server.retire is not None:
                server.retire()   # this one is served; then the worker drains and exits
        server.spawn(self.loop, cycle.run(app))

    def _log_access(self, cycle: RequestCycle) -> None:
        scope = cycle.scope
        fields = {"client": _client_label(scope["client"]), "method": scope["method"],
                  "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
                  "http_version": scope["http_version"], "status": cycle.status,
                  "bytes": cycle.sent,
                  "duration_ms": round((self.loop.time() - self.started_at) * 1000, 3),
                  "pid": os.getpid()}
        # The fields go with the record too: a JSON log (--log-json) has them.
        line_format = self.server.access_log
        assert line_format is not None   # (called only with an access log)
        access_log.info(line_format.format(**fields), extra={"access": fields})

    def response_done(self, cycle: RequestCycle) -> None:
        """The response to ``cycle`` is all written: the next request's turn,
        or the end of the connection."""
        if self.server.access_log:
            self._log_access(cycle)
        if self.server.metrics is not None:
            self.server.metrics.record(cycle.status, self.loop.time() - self.started_at)
        if self.cycle is not cycle:
            return
        self.cycle = None
        if self.pending_error and not cycle.keep_alive:
            self._disarm()
            self._linger(b"")
        elif not cycle.keep_alive or self.closing:
            self.close()
        elif self.pipeline:
            self.start(self.pipeline.popleft())
            self.update_reading()
        elif self.pending_error:
            self._refuse(self.pending_error)
        elif self.client_eof:
            self.close()
        else:
            self._arm_idle()
            self.update_reading()


class RequestCycle(Cycle):
    """One request and its response: the ``receive`` and ``send`` an app
    gets, and what they keep.

    Its state and ``send`` are Cycle's, in C: proto, scope, keep_alive,
    expect_100, body (received, not yet handed over), more_body, received
    (body bytes so far), body_done (the app has had all of the body: next
    is a disconnect), waiter, disconnected, response_started,
    response_complete, status, headers (None once the head is written),
    chunked, head_only, sent (response body bytes written), and version
    (the request's HTTP version, which the response is written in,
    whatever the app does to its scope). ``send``
    writes the common response in C and leaves the rest to ``_send_slow``.

    What _build/asgi/asgicore.c relies on (tests/test_contracts.py holds
    the first):

    1. No state of its own: ``__slots__ = ()``, no ``__dict__``, no weak
       references. asgicore makes the next request's cycle over from the
       last one when nothing else holds it, setting every field of Cycle's;
       a field added here would carry one request's value into the next.
    2. ``_send_slow``, ``_ended``, ``_suspended`` and ``wake`` are the
       methods C calls by name, with the arguments they take here.
    3. ``send`` is Cycle's, in C: a ``send`` defined here would be skipped
       by the common path's."""

    __slots__ = ()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app, begun=None) -> None:
        """Run ``app`` on this request -- or go on with its coroutine
        ``begun`` elsewhere (an eager start that has to wait)."""
        try:
            await (app(self.scope, self.receive, self.send) if begun is None else begun)
        except BaseException as exc:
            self._ended(exc)
        else:
            self._ended(None)

    def _ended(self, exc: BaseException | None) -> None:
        """The app's coroutine is over, having raised ``exc`` if not None:
        log what went wrong, and answer or reset what it left undone. An
        exit or interrupt goes on once that is done; a coroutine being
        closed (the loop going away) starts nothing."""
        self.body = bytearray()   # what the app never read
        if isinstance(exc, GeneratorExit):
            raise exc
        if exc is None:
            if not self.response_complete:
                # Owed to a client still there, an app's fault; to one gone
                # (receive said http.disconnect), nothing is owed.
                report = log.debug if self.disconnected else log.error
                report("the ASGI app returned %s to %s %s",
                       "before the end of its response" if self.response_started
                       else "without a response", self.scope["method"], self.scope["path"])
                self._abandon()
            return
        if not isinstance(exc, Exception):
            self._abandon()
            raise exc
        if isinstance(exc, ClientDisconnected) and self.disconnected:
            log.debug("client gone during %s %s", self.scope["method"], self.scope["path"])
        else:
            log.error("the ASGI app raised on %s %s", self.scope["method"],
                      self.scope["path"], exc_info=exc)
        self._abandon()

    def _suspended(self, coro, yielded, task: asyncio.Task | None, context) -> None:
        # AsgiCore started the app eagerly and it has to wait (or it is not
        # a coroutine, task None): it goes on in its task.
        proto = self.proto
        if task is None:
            proto.server.spawn(proto.loop, self.run(None, coro))
            return
        # run() around the rest of the app's coroutine, begun up to where
        # the coroutine waits: what the task then throws in (a cancel)
        # reaches the app there.
        guarded = self.run(None, Resumed(coro, yielded))
        adopt(task, proto.loop, Resumed(guarded, guarded.send(None)), context)
        proto.server.track(task)

    def _abandon(self) -> None:
        # The app failed: a 500 if nothing was sent, else a reset. Nothing
        # is sent until the head is written, with the first body message
        # (headers is None from then on): an app whose headers were refused
        # there (check_field) gets its 500.
        proto = self.proto
        if self.response_complete or self.disconnected or proto.closing:
            return
        if not self.response_started or self.headers is not None:
            self.keep_alive = self.keep_alive and not self.more_body
            self.status = 500
            self._write_head([(b"content-type", b"text/plain; charset=utf-8")], b"500 "
                             b"Internal Server Error\n", more_body=False)
            self.response_complete = True
            self.wake()
            proto.response_done(self)
        else:
            proto.reset()

    async def receive(self) -> dict:
        if self.expect_100:
            self.expect_100 = False
            if not self.response_started and self.proto.transport is not None:
                self.proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if (self.body_done or (not self.body and self.more_body)) and not (
                self.disconnected or self.response_complete):
            # Nothing to hand over yet; after the whole body, nothing until
            # the response is complete or the client gone (http.disconnect).
            self.proto.update_reading()
            self.waiter = self.proto.loop.create_future()
            try:
                handed = await self.waiter   # (bytes from on_body, or None from wake)
            finally:
                self.waiter = None
        else:
            handed = None
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if handed is not None:
            # What came after it waits in self.body, for the next receive.
            more_body = self.more_body or bool(self.body)
            self.body_done = not more_body
            return {"type": "http.request", "body": handed, "more_body": more_body}
        body = bytes(self.body)
        self.body.clear()
        self.body_done = not self.more_body
        if self.proto.reading_paused:
            self.proto.update_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def _send_slow(self, message: dict) -> None:
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self.response_started = True
            self.status = message["status"]
            self.headers = message.get("headers", ())
            return
        if self.response_complete:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if self.disconnected:
            raise ClientDisconnected("the client is gone")
        proto = self.proto
        if kind == "http.response.body":
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.headers is not None:
                self._write_head(self.headers, body, more)
            elif not self.head_only and body:
                assert proto.transport is not None
                self._write_body(proto.transport, body)
                self.sent += len(body)
            if not more:
                if self.chunked and not self.head_only:
                    assert proto.transport is not None
                    proto.transport.write(_CHUNK_END)
                self.response_complete = True
                self.wake()   # a receive() waiting for the end: http.disconnect now
                proto.response_done(self)
            if proto.write_paused:
                await proto.drain()
        elif kind == "http.response.pathsend":
            await self._send_file(message["path"])
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http response")

    def _write_head(self, headers, body: bytes, more_body: bool) -> None:
        # The head goes with the first body message: one write, and when the
        # whole body is in that message, its length is known.
        proto = self.proto
        version = self.version
        status = self.status
        parts = [_status_line(version, status), proto.server.date_line]
        has_length = False
        for name, value in headers:
            check_field(name, value)   # before a byte of the head is written
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"connection" and value.lower() == b"close":
                self.keep_alive = False
            elif lname == b"transfer-encoding":
                continue   # ours to decide
            parts += (name, b": ", value, b"\r\n")
        if status in NO_CONTENT_STATUSES:
            self.head_only = True   # the content an app gives is not written
        elif not has_length:
            if not more_body:
                parts.append(b"content-length: %d\r\n" % len(body))
            elif version == "1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False   # HTTP/1.0: the close ends the body
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif version == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        assert proto.transport is not None
        length = len(body)
        if body and not self.head_only and length < BODY_APART:
            parts.append(self._framed(body))
            body = b""
        proto.transport.write(b"".join(parts))
        self.headers = None
        if body and not self.head_only:
            self._write_body(proto.transport, body)
        if not self.head_only:
            self.sent += length

    def _framed(self, body: bytes) -> bytes:
        # A small body as it goes on the wire: a chunk, or as it is.
        return b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body

    def _write_body(self, transport, body: bytes) -> None:
        # A large body goes in writes of its own, never joined to anything:
        # the uring send stream sends it from the object, not a copy.
        if not self.chunked or len(body) < BODY_APART:
            transport.write(self._framed(body))
        else:
            transport.write(b"%x\r\n" % len(body))
            transport.write(body)
            transport.write(b"\r\n")

    async def _send_file(self, path: str) -> None:
        # http.response.pathsend. On uringio's loop the transport is the
        # engine's connection: the file is queued behind the head, in order
        # with what follows, and goes without passing through Python --
        # spliced (uring) or sendfile'd (epoll), or, up to the loop's
        # read_files_up_to, read by a file operation and sent in one piece
        # (docs/benchmarks.md, static files). Over TLS: read and written
        # through the record layer.
        proto = self.proto
        transport = proto.transport
        assert transport is not None
        file: Any = open(path, "rb")   # noqa: SIM115 -- closed after the send
        try:
            size = os.fstat(file.fileno()).st_size
            if not any(name.lower() == b"content-length" for name, _ in self.headers):
                self.headers = [*self.headers, (b"content-length", b"%d" % size)]
            self._write_head(self.headers, b"", False)
            if self.head_only or not size:
                pass
            elif isinstance(transport, Connection):
                core = getattr(proto.loop, "_core", None)
                transport.sendfile(file, 0, size, close=True,
                                   read_up_to=getattr(core, "read_files_up_to", 0))
                file = None   # the connection's now: closed once sent
                self.sent += size
            else:
                # A transport of another kind (TLS: the file must go through
                # its record layer, never the kernel's sendfile): read and
                # written a piece at a time, as the client takes them.
                while chunk := file.read(PATHSEND_PIECE):
                    if proto.transport is None:
                        break   # the client left
                    transport.write(chunk)
                    self.sent += len(chunk)
                    if proto.write_paused:
                        await proto.drain()
        finally:
            if file is not None:
                file.close()
        self.response_complete = True
        self.wake()
        proto.response_done(self)


async def _service_unavailable(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"503 Service Unavailable\n"})


class _Lingering(asyncio.Protocol):
    """A refused connection's last moments (nginx's lingering close): our
    answer is written and our side shut (FIN); what the client still sends
    -- the rest of a body too large, say -- is read and dropped until its
    FIN, or for LINGER_TIMEOUT at most. Closing with its bytes unread would
    make the kernel send a reset, and a reset can make the client's kernel
    drop our answer before it is read."""

    def __init__(self, proto: HttpProtocol, transport) -> None:
        self.proto = proto
        self.timer = proto.loop.call_later(LINGER_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        return None   # the transport closes

    def connection_lost(self, exc) -> None:
        self.timer.cancel()
        self.proto.connection_lost(exc)


def _client_label(client) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


# The fields an access log line may name ({name}, str.format's syntax), and
# the default, uvicorn's line.
ACCESS_FIELDS = ("client", "method", "path", "query", "http_version", "status", "bytes",
                 "duration_ms", "pid")
ACCESS_LOG_FORMAT = '{client} - "{method} {path} HTTP/{http_version}" {status}'


def check_access_log_format(text: str) -> str:
    """``text`` if it formats with ACCESS_FIELDS alone, else ValueError."""
    try:
        text.format(**{name: "" for name in ACCESS_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"an access log format names only {{{'}, {'.join(ACCESS_FIELDS)}}}"
                         f" ({exc!r} in {text!r})") from None
    return text
