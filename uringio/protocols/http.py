"""HTTP/1.1 on uringio: the protocol, a small router, static files.

Parsing is llhttp (the parser of Node.js, compiled in); its callbacks, and
the common request from there to its response bytes, are the C base class
``HttpCore`` (``_build/protocols/httpcore.c``), and the rest is here. Requests on a
connection are answered in order, pipelined or not; every response a chunk
of input produces goes out with one write, so a pipelined batch costs one
send.

Limits, each answered with its status and a closed connection, without
disturbing other connections: a malformed request (400), headers over
``MAX_HEADER_BYTES`` (431), a body over ``max_body`` (413), and headers not
complete within ``header_timeout`` seconds, the slowloris attack (408).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

from ..net.connection import Connection, Protocol
from . import _httpcore
from ._httpcore import HttpCore
from .fields import NO_CONTENT_STATUSES, InvalidField, check_field, is_final_status

log = logging.getLogger("uringio")

MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
LINGER_TIMEOUT = 2.0   # after refusing a request, how long we read and discard
SERVER = b"uringio"

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# Pieces of the response head, formatted once rather than per response.
# The final statuses: a handler's 1xx is refused (_respond).
_STATUS_LINES = {(v, code): b"HTTP/%s %d %s\r\nServer: %s\r\n" % (v.encode(), code, reason, SERVER)
                 for v in ("1.0", "1.1") for code, reason in _REASONS.items() if code >= 200}
# The statuses httpcore.c writes whole (a Content-Length and the body): not
# those without content, which _respond writes.
_STATUS_LINES_11 = {code: line for (v, code), line in _STATUS_LINES.items()
                    if v == "1.1" and code not in NO_CONTENT_STATUSES}
_CONTENT_TYPES: dict[str, bytes] = {}


def _content_type(name: str) -> bytes:
    ctype = _CONTENT_TYPES.get(name)
    if ctype is None:
        ctype = name.encode()
        check_field(b"Content-Type", ctype)
        if len(_CONTENT_TYPES) < 1024:   # the app's few types, not one per request
            _CONTENT_TYPES[name] = ctype
    return ctype

_EMPTY = b""


class Request:
    """One parsed request. ``url`` is the request target as sent (bytes);
    ``path`` (str, still percent-encoded) and ``query`` (bytes) are cut from
    it when asked for. ``headers`` maps lower-case names to values (bytes)."""

    __slots__ = ("method", "url", "headers", "body", "keep_alive", "version")

    def __init__(self, method: str, url: bytes, headers: dict, body: bytes,
                 keep_alive: bool, version: str) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version

    @property
    def path(self) -> str:
        url = self.url
        if url[:1] == b"/" and b"?" not in url:
            return url.decode("latin-1")   # the common case, without parse_url
        # An absolute-form target may have no path at all (http://host:port):
        # RFC 9112 §3.2.2 makes that "/".
        return (httptools.parse_url(url).path or b"/").decode("latin-1")

    @property
    def query(self) -> bytes:
        url = self.url
        if b"?" not in url:
            return _EMPTY
        return httptools.parse_url(url).query or _EMPTY


class Response:
    """What a handler returns: a status, a body, and extra headers.

    A response may be made once and returned again and again (a fixed page):
    the bytes that follow its Date header on a keep-alive HTTP/1.1
    connection are formatted on its first use and kept, until its body or
    content type is set again; and the whole response, status line and Date
    included, is kept for as long as its status and the Date stay the same
    (the per-request path in ``_build/protocols/httpcore.c`` makes and checks that)."""

    __slots__ = ("status", "_body", "_content_type", "headers", "file", "file_size", "_tail",
                 "_wire", "_wire_date", "_wire_status")

    file_size: int   # set with file, by from_file

    def __init__(self, body: bytes | str = b"", status: int = 200,
                 content_type: str = "text/plain; charset=utf-8",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self._body = body if body.__class__ is bytes else cast(str, body).encode()
        self.status = status
        _content_type(content_type)   # InvalidField now, in the handler, not when written
        self._content_type = content_type
        self.headers = headers   # extra (name, value) pairs, or None
        self.file: Any = None   # an open file sent as the body, by sendfile
        self._tail: bytes | None = None

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, body: bytes | str) -> None:
        self._body = body if body.__class__ is bytes else cast(str, body).encode()
        self._tail = self._wire = None

    @property
    def content_type(self) -> str:
        return self._content_type

    @content_type.setter
    def content_type(self, content_type: str) -> None:
        _content_type(content_type)
        self._content_type = content_type
        self._tail = self._wire = None

    def _keep_alive_tail(self) -> bytes:
        """Content-Type, Content-Length, the blank line and the body."""
        tail = b"Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            _content_type(self._content_type), len(self._body), self._body)
        self._tail = tail
        return tail

    @classmethod
    def from_file(cls, file, content_type: str) -> Response:
        """The whole of an open file as the body; it goes out without being
        read into Python (sendfile on epoll, splice on io_uring), and is
        closed once sent."""
        response = cls(b"", 200, content_type)
        response.file = file
        response.file_size = os.fstat(file.fileno()).st_size
        return response

    @classmethod
    def json(cls, value, status: int = 200) -> Response:
        return cls(json.dumps(value, separators=(",", ":")), status, "application/json")


class Router:
    """Maps a path to a handler ``handler(request) -> Response``; serves
    static files under a prefix."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[Callable, tuple[str, ...]]] = {}
        # The same routes by the bytes a request names them with, so the
        # common request (no query, nothing encoded) is routed without
        # decoding its URL first.
        self._by_url: dict[bytes, tuple[Callable, tuple[str, ...]]] = {}
        self._static: tuple[str, str] | None = None
        # Static files up to this size are read and written with their
        # response head, larger ones spliced; -1: the loop's choice
        # (Loop.read_files_up_to: where a read beats splice or sendfile).
        self.read_files_up_to = -1

    def route(self, path: str, methods: tuple[str, ...] = ("GET", "HEAD")):
        """Decorator: ``@router.route("/json")``."""
        def register(handler: Callable) -> Callable:
            self._routes[path] = (handler, methods)
            # Only plain ASCII paths: their bytes are exactly what a client
            # sends. Any other path is matched by the path table, as before.
            if "%" not in path and "?" not in path and path.isascii():
                self._by_url[path.encode("ascii")] = (handler, methods)
            return handler
        return register

    def static(self, prefix: str, directory: str, read_up_to: int = -1) -> None:
        """Serve the files under ``directory`` at ``prefix`` (say "/static/").
        Files of at most ``read_up_to`` bytes (default: the loop's
        ``read_files_up_to``) are read and written, larger ones spliced
        (``Connection.sendfile``)."""
        self._static = (prefix, os.path.realpath(directory))
        self.read_files_up_to = read_up_to

    def handle(self, request: Request) -> Response:
        entry = self._by_url.get(request.url)
        if entry is None:
            entry = self._routes.get(request.path)
        if entry is not None:
            handler, methods = entry
            if request.method not in methods:
                return Response(b"method not allowed\n", 405,
                                headers=[("Allow", ", ".join(methods))])
            return handler(request)
        if self._static is not None and request.path.startswith(self._static[0]):
            return self._file(request)
        return Response(b"not found\n", 404)

    def _file(self, request: Request) -> Response:
        assert self._static is not None   # handle() asks only when set
        prefix, root = self._static
        if request.method not in ("GET", "HEAD"):
            return Response(b"method not allowed\n", 405, headers=[("Allow", "GET, HEAD")])
        relative = unquote(request.path[len(prefix):])
        if "\0" in relative:
            return Response(b"bad path\n", 400)
        path = os.path.realpath(os.path.join(root, relative))
        # realpath resolves "..", "%2e%2e" (already unquoted) and symlinks:
        # anything that ends up outside the root is refused.
        if not path.startswith(root + os.sep):
            return Response(b"forbidden\n", 403)
        try:
            if not os.path.isfile(path):
                return Response(b"not found\n", 404)
            file = open(path, "rb")
        except FileNotFoundError:
            return Response(b"not found\n", 404)
        except PermissionError:
            return Response(b"forbidden\n", 403)
        return Response.from_file(file, mimetypes.guess_type(path)[0] or "application/octet-stream")


class RequestLimit(Exception):
    """A request broke a limit: answer ``status`` and close (serve http's
    and the ASGI server's)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# [when the next second begins, the Date header line for this one]. The
# per-request path reads this very list: change its items, never rebind it.
_date: list[Any] = [0.0, b""]


def _date_line() -> bytes:
    """``Date: ...\r\n``, formatted once a second, not once a response."""
    now = time.time()
    if now >= _date[0]:
        second = int(now)
        line = b"Date: %s\r\n" % formatdate(second, usegmt=True).encode()
        _date[0], _date[1] = second + 1.0, line
    return _date[1]


class HTTPProtocol(HttpCore, Protocol):
    """HTTP/1.1 (and 1.0) server side of one connection.

    The parser, its callbacks and the state of the request being parsed
    are HttpCore's (``_build/protocols/httpcore.c``): they build each Request, route it,
    and append the common response to ``_out``. This class reads the input,
    answers what that path hands back (``_respond``, ``_handler_failed``)
    and enforces the limits."""

    def __init__(self, router: Router, max_body: int = DEFAULT_MAX_BODY,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> None:
        # HttpCore starts with an empty URL, headers, body, output list and
        # Date line, no head begun, and not _done (a response said "close":
        # ignore the rest).
        self._router = router   # HttpCore takes its exact-URL table too
        self._max_body = max_body
        self._header_timeout = header_timeout
        self._conn: Connection | None = None
        self._timer = None

    # -- connection ----------------------------------------------------------

    def connection_made(self, conn: Connection) -> None:
        self._conn = conn
        self._send = conn.write
        self._waiting_since = conn.loop.time()
        self._arm_timer(self._header_timeout)

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # data_received(data) is HttpCore's: it parses with llhttp and sends
    # what the chunk's requests produced in one write (_flush). It calls
    # these two for the rare cases:

    def _input_failed(self, exc: BaseException) -> None:
        """The parser stopped: bad input (or an upgrade), a limit broken,
        or a failure in the per-request path, raised in a callback."""
        if self._done:
            return   # the rest of a chunk after a response that closes
        if isinstance(exc, RequestLimit):
            self._fail(exc.status)
        elif isinstance(exc, httptools.HttpParserUpgrade):
            # After a request with an Upgrade this server does not take,
            # answered as a plain one: what follows is the other protocol.
            self._finish()
        elif isinstance(exc, httptools.HttpParserError):
            self._fail(400)
        elif isinstance(exc, Exception):
            log.error("HTTP request handling failed: %r", exc)
            self._fail(500)
        else:
            raise exc   # an exit or interrupt goes on

    def _head_incomplete(self, size: int) -> None:
        """A request's head is still incomplete after a chunk of ``size``
        bytes: count them, and make sure the 408 clock is running."""
        self._stalled += size
        if self._stalled > MAX_HEADER_BYTES:
            self._fail(431)
            return
        if self._waiting_since is None:
            assert self._conn is not None   # set by connection_made
            self._waiting_since = self._conn.loop.time()
        if self._timer is None:
            self._arm_timer(self._header_timeout)

    def eof_received(self):
        return None   # the peer is done sending: close after our responses

    # -- responses -----------------------------------------------------------

    def _respond(self, request: Request, response: Response) -> None:
        keep_alive = request.keep_alive
        body = response.body
        ctype = _content_type(response.content_type)
        # HTTP/1.0 is answered in kind; any other version llhttp takes
        # (0.9, 2.0 on an HTTP/1 connection) in the one we speak (RFC 9110 §2.5).
        version = request.version if request.version == "1.0" else "1.1"
        status = response.status
        status_line = _STATUS_LINES.get((version, status))
        if status_line is None:
            if not is_final_status(status):
                # (a 1xx would be read as interim, and the next response as
                # this one's: the handler's doing, as if it had raised)
                self._respond(request, self._handler_failed(request, ValueError(
                    f"a response's status must be an int from 200 to 999, not {status!r}")))
                return
            status_line = b"HTTP/%s %d %s\r\nServer: %s\r\n" % (
                version.encode(), status, _REASONS.get(status, b"Unknown"), SERVER)
        file = response.file
        head = [b"%s%sContent-Type: %s\r\n" % (status_line, self._date, ctype)]
        if status in NO_CONTENT_STATUSES:   # whatever the handler gave (RFC 9110 §8.6)
            body = b""
            if file is not None:
                file.close()
                file = None
        else:
            head.append(b"Content-Length: %d\r\n" % (
                len(body) if file is None else response.file_size))
        for name, value in response.headers or ():
            line = (name.encode(), value.encode())
            try:
                check_field(*line)
            except InvalidField as exc:   # the handler's doing: as if it had raised
                self._respond(request, self._handler_failed(request, exc))
                return
            head.append(b"%s: %s\r\n" % line)
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        self._out.append(b"".join(head))
        if file is not None:
            if request.method == "HEAD":
                file.close()
            else:
                self._flush()
                conn = self._conn
                assert conn is not None   # set by connection_made
                read_up_to = self._router.read_files_up_to
                conn.sendfile(file, close=True, read_up_to=read_up_to if read_up_to >= 0
                              else conn.loop.read_files_up_to)
        elif request.method != "HEAD":
            self._out.append(body)
        if not keep_alive:
            self._finish()

    def _handler_failed(self, request: Request, exc: Exception) -> Response:
        log.error("HTTP handler for %s %s raised", request.method, request.path, exc_info=exc)
        return Response(b"internal server error\n", 500)

    def _fail(self, status: int) -> None:
        # A refused HEAD gets no content (RFC 9110 §9.3.2), and says so with
        # a Content-Length of 0, which frames it right whatever the client
        # thinks it asked: the method llhttp has may be the previous
        # request's, when this one's request line did not parse.
        body = b"" if self._method == "HEAD" else b"%d %s\n" % (status, _REASONS[status])
        self._out.append(b"%s%sContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (
                             _STATUS_LINES["1.1", status], _date_line(), len(body), body))
        # A lingering close: closing with the rest of the request unread
        # would send a reset, and the peer could lose our answer. So: answer,
        # send FIN, read and drop what still comes until the peer's FIN (then
        # eof_received closes) or LINGER_TIMEOUT.
        self._done = True
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
        assert self._conn is not None   # set by connection_made
        self._conn.write_eof()
        self._timer = self._conn.loop.call_later(LINGER_TIMEOUT, self._conn.close)

    def _finish(self) -> None:
        # Nothing after this response is read; close once it is sent.
        self._done = True
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self._conn is not None   # set by connection_made
        self._conn.close()

    # -- the 408 timer -------------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        assert self._conn is not None   # set by connection_made
        self._timer = self._conn.loop.call_later(delay, self._check_head_timeout)

    def _check_head_timeout(self) -> None:
        # One timer per connection, armed only while a request's head is
        # incomplete: a complete pipelined batch never touches the heap.
        self._timer = None
        if self._done or self._waiting_since is None:
            return
        assert self._conn is not None   # set by connection_made
        left = self._waiting_since + self._header_timeout - self._conn.loop.time()
        if left > 0:
            self._arm_timer(left)
        else:
            self._fail(408)


_httpcore.setup(Request, Response, RequestLimit, _STATUS_LINES_11, _date, _date_line,
                MAX_HEADER_BYTES, httptools.HttpParserError, httptools.HttpParserUpgrade)


def default_router(static_dir: str | None = None, read_up_to: int = -1) -> Router:
    """The routes of ``python -m uringio serve http``."""
    router = Router()

    hello = Response(b"Hello, World!")   # a fixed response can be made once

    @router.route("/")
    def plaintext(request: Request) -> Response:
        return hello

    @router.route("/json")
    def hello_json(request: Request) -> Response:
        return Response.json({"message": "Hello, World!"})

    @router.route("/echo", methods=("POST", "PUT"))
    def echo(request: Request) -> Response:
        return Response(request.body, content_type="application/octet-stream")

    if static_dir is not None:
        router.static("/static/", static_dir, read_up_to)
    return router


def http_factory(router: Router, max_body: int = DEFAULT_MAX_BODY,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> Callable[[], HTTPProtocol]:
    """A protocol factory for ``serve``/``run_server``."""
    def factory() -> HTTPProtocol:
        return HTTPProtocol(router, max_body, header_timeout)
    return factory
