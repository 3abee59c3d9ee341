"""``EventLoop``: asyncio's event loop on uringio's completion interface.

asyncio's ``BaseEventLoop`` already holds everything about an event loop
that does not touch a socket: handles, timers, futures and tasks (its C
``Future`` and ``Task``), the executor, name resolution, the server object,
the connection logic of ``create_connection`` and ``create_server``. What it
leaves to a subclass is the IO, and that is uringio's:

* **the turn**: one turn of the core loop (``Loop.run_once``), which waits
  in ``io_uring_enter`` or ``epoll_wait``, dispatches every completion,
  fires the timers due and runs what is ready. There is one ready queue and
  one timer heap: asyncio's ``_ready`` deque and ``_scheduled`` heap, which
  the core adopts (``BaseLoop.host``) and fills with its own callbacks and
  timers too; the C ready queue (``_ready.Ready``) runs both kinds. No copy
  of ``BaseEventLoop._run_once``;
* **transports**: a ``uringio.net.Connection`` per socket, which is an
  ``asyncio.Transport``. Its receive stream hands each chunk straight to
  ``Protocol.data_received`` (from the C dispatcher on uring), and
  ``transport.write`` appends to its C send stream: no ``Handle``,
  ``Future`` or ``call_soon`` per message;
* **the socket operations** (``sock_recv``, ``sock_connect``,
  ``sock_accept``): one core operation each, a future the caller awaits.
  ``sock_sendall`` sends at once and waits for room on the core's watch, as
  asyncio's loop does, so that a cancelled call can stop sending.

A loop is bound to the thread that creates it (an io_uring ring with
``IORING_SETUP_SINGLE_ISSUER`` may only be entered from its creator):
create it in the thread that runs it, as ``asyncio.run`` does.

asyncio's private names this package relies on, checked against CPython
3.11.7 (requires-python is 3.11; tests/test_cpython_asyncio.py runs
CPython's own tests of the loop on both backends):

* ``BaseEventLoop``: ``_ready``, ``_scheduled``, ``_stopping``,
  ``_clock_resolution``, ``_debug``, ``_closed``, ``_current_handle``,
  ``_selector`` (None once closed, which transports' repr reads), and the
  hooks it leaves to a subclass or calls on it: ``_run_once``,
  ``_process_events``, ``_write_to_self``, ``_timer_handle_cancelled``,
  ``_make_socket_transport``, ``_make_datagram_transport``,
  ``_make_read_pipe_transport``, ``_make_write_pipe_transport``,
  ``_make_subprocess_transport``, ``_sendfile_native``,
  ``_sendfile_fallback``;
* ``Handle`` and ``TimerHandle``: ``_callback``, ``_args``, ``_cancelled``,
  ``_context``, ``_loop``, ``_repr``, ``_source_traceback``, ``_run``,
  ``_scheduled``, ``_when`` (the C ready queue writes a Handle's slots);
* functions: ``base_events._set_nodelay``, ``_check_ssl_socket``,
  ``_format_handle`` and ``logger``; ``format_helpers._format_callback_source``;
  ``tasks._enter_task``, ``_leave_task`` and ``_asyncio._current_tasks``
  (asgi/eager.py); ``constants._SendfileMode`` (net/connection.py);
* classes: ``selector_events._SelectorDatagramTransport``,
  ``unix_events._UnixReadPipeTransport``, ``_UnixWritePipeTransport`` and
  ``_UnixSubprocessTransport`` (readiness.py).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import selectors
import signal
import socket
import stat
import threading
import warnings
import weakref
from asyncio import base_events, constants, events, format_helpers, sslproto, trsock
from collections import deque
from collections.abc import Callable
from typing import Any

from .._core import open_loop
from ..net.connection import Connection
from ..net.listeners import is_shared
from . import sendfile
from ._ready import Ready
from .futures import resolve
from .readiness import ReadinessMixin

log = logging.getLogger("uringio")

# How long accepting pauses when the process is out of fds (as asyncio).
ACCEPT_RETRY_DELAY = 1.0


class _SelectorView:
    """What asyncio's code asks of a loop's ``_selector`` besides the turn
    (which is the core's here, not ``select``): ``get_key``, for its
    transports' ``repr``, which asks what an fd is watched for; ``close``."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop

    def get_key(self, fd: int) -> selectors.SelectorKey:
        watched = self._loop._watching(fd)
        if not watched:
            raise KeyError(fd)
        return selectors.SelectorKey(fd, fd, watched, None)

    def close(self) -> None:
        pass


def _nothing() -> None:
    """What a wakeup runs: waking is all it is for."""


class EventLoop(ReadinessMixin, base_events.BaseEventLoop):  # type: ignore[misc]
    """An ``asyncio.AbstractEventLoop`` on io_uring (``backend="uring"``) or
    epoll (``"epoll"``); ``"auto"`` picks io_uring where it works."""

    _selector: _SelectorView | None   # None once closed
    _scheduled: list[events.TimerHandle]   # asyncio's timer heap (BaseEventLoop's)
    _clock_resolution: float
    _current_handle: events.Handle | None

    def __init__(self, backend: str = "auto", **options: Any) -> None:
        super().__init__()
        self._core = open_loop(backend, **options)
        # asyncio's create_future, less its Python frame: a stream's reader
        # makes one per wait for data.
        self.create_future = functools.partial(asyncio.Future, loop=self)  # type: ignore[method-assign]
        self._fast = Ready(self._ready, self, events.Handle, self._handle_raised)
        # One turn for both loops: the core's, over asyncio's ready queue and
        # timer heap, which hold the core's callbacks and timers too.
        self._core.host(self._ready, self._scheduled, self._fast.run, self._clock_resolution)
        self._set_fast_path()
        self._selector = _SelectorView(self)
        # A protocol callback that raises reaches asyncio's exception handler.
        self._core.on_error = self._callback_failed
        # The transports by fd (the newest one on a reused number wins).
        self._transports: weakref.WeakValueDictionary[int, Connection] = (
            weakref.WeakValueDictionary())
        self._signal_handlers: dict[int, events.Handle] = {}
        self._sock_readers: weakref.WeakKeyDictionary[socket.socket, _SockReader] = (
            weakref.WeakKeyDictionary())
        self._sock_writers: weakref.WeakKeyDictionary[socket.socket, _SockWriter] = (
            weakref.WeakKeyDictionary())
        self._init_readiness()

    @property
    def backend(self) -> str:
        """``"uring"`` or ``"epoll"``: the core loop under this one."""
        return self._core.backend

    def engine_counters(self) -> dict[str, int]:
        """The engine's own counts (``Loop.engine_counters``): the kernel
        waits and completions of this loop, for metrics."""
        return self._core.engine_counters()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")

    # -- the turn --------------------------------------------------------------

    def _set_fast_path(self) -> None:
        # call_soon is the C ready queue's, as an instance attribute, and the
        # turn runs the queue in C, while the loop is open and not in debug
        # mode; in debug mode asyncio's call_soon (its checks) and a runner
        # that times each callback as asyncio's turn does.
        fast = not self._debug and not self._closed
        if fast:
            self.call_soon = self._fast   # type: ignore[method-assign]
        else:
            self.__dict__.pop("call_soon", None)
        self._core._run_ready = self._fast.run if fast else self._run_ready_debug

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        if "_fast" in self.__dict__:   # (BaseEventLoop.__init__ calls this first)
            self._set_fast_path()

    def _run_once(self) -> None:
        """One turn, the core loop's: wait for IO (not at all while a stop
        is asked for, else at most until the next timer, asyncio's or the
        core's), dispatch the completions, move the timers due to the ready
        queue, run what was ready before this point."""
        self._core.run_once(0 if self._stopping else None)

    def _timer_handle_cancelled(self, handle: events.TimerHandle) -> None:
        # asyncio's TimerHandle.cancel calls this: the heap is the core's.
        if handle._scheduled:
            self._core._timer_cancelled()

    def _run_ready_debug(self, n: int) -> None:
        # asyncio's debug-mode steps for each handle: the current handle
        # set while it runs, and a warning when it took too long.
        ready = self._ready
        for _ in range(n):
            if not ready:
                break
            entry = ready.popleft()
            if entry.__class__ is tuple:   # the core's (callback, args)
                callback, args = entry
                try:
                    callback(*args)
                except Exception as exc:
                    self._callback_failed(callback, exc)
                continue
            if entry._cancelled:
                continue
            self._current_handle = entry
            started = self.time()
            try:
                entry._run()
                took = self.time() - started
                if took >= self.slow_callback_duration:
                    base_events.logger.warning("Executing %s took %.3f seconds",
                                               base_events._format_handle(entry), took)
            finally:
                self._current_handle = None

    def _handle_raised(self, handle: Any, exc: BaseException) -> None:
        # What asyncio's Handle._run does with a callback's exception (and
        # the core's own report, for its (callback, args)).
        if isinstance(handle, tuple):
            self._callback_failed(handle[0], exc)
            return
        callback = format_helpers._format_callback_source(handle._callback, handle._args)
        context = {"message": f"Exception in callback {callback}", "exception": exc,
                   "handle": handle}
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _callback_failed(self, what: object, exc: BaseException) -> None:
        self.call_exception_handler({"message": f"Exception in callback {what!r}",
                                     "exception": exc})

    # -- what BaseEventLoop leaves to its subclass -----------------------------

    def _process_events(self, event_list: object) -> None:
        pass   # (not called: the core's turn dispatches completions as they come)

    def _write_to_self(self) -> None:
        # call_soon_threadsafe and signal handlers: wake the core's wait.
        if not self._core.is_closed():
            self._core.call_soon_threadsafe(_nothing)

    def close(self) -> None:
        """Close the loop. Transports still open are aborted, with a
        ResourceWarning; the core loop cancels what is in flight."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        still_open = [t for t in self._transports.values() if not t.is_closing()]
        if still_open:
            warnings.warn(f"{self!r} closed with {len(still_open)} transport(s) open",
                          ResourceWarning, stacklevel=2, source=self)
            for transport in still_open:
                transport.abort()
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        self._close_readiness()
        super().close()
        self._set_fast_path()   # asyncio's call_soon, which refuses a closed loop
        self._core.close()
        self._selector = None   # as asyncio's loops: transports' repr asks whether it is

    # -- transports ------------------------------------------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future | None = None, *,
                               extra: dict | None = None, server: Any = None) -> Connection:
        sock.setblocking(False)
        # As asyncio's socket transport does, for every TCP socket it is
        # given (connected, accepted or passed in): a small write goes out
        # at once instead of waiting for the peer's ACK (Nagle).
        base_events._set_nodelay(sock)
        info = dict(extra or {})
        info.setdefault("socket", trsock.TransportSocket(sock))
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            if name not in info:
                try:
                    info[name] = get()
                except OSError:
                    info[name] = None
        on_closed = None
        if server is not None:
            server._attach()
            on_closed = functools.partial(_detach, server)
        conn = Transport(self._core, sock.fileno(), protocol, on_closed, sock=sock, extra=info)
        self._transports[conn.fd] = conn
        self.call_soon(self._transport_made, conn, waiter)
        return conn

    def _transport_made(self, conn: Connection, waiter: asyncio.Future | None) -> None:
        # Discussion: as asyncio's transports do -- connection_made, then
        # reading starts in a callback of its own, queued ahead of the task
        # the waiter wakes. Completions reach their handlers during the
        # wait, ahead of asyncio's ready callbacks: started here, a receive
        # could hand the first bytes to the protocol before the task that
        # made the connection (create_connection) has its transport.
        try:
            conn.start(reading=False)
        except BaseException as exc:
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            conn.abort()
            raise
        self.call_soon(conn.start_reading)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT):
        # asyncio's own TLS over our transport: SSLProtocol is a
        # BufferedProtocol, which a Connection feeds into its buffer.
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _sendfile_native(self, transp, file, offset: int, count: int | None) -> int:
        return await sendfile.sendfile_native(self, transp, file, offset, count)

    async def _sendfile_fallback(self, transp, file, offset: int, count: int | None) -> int:
        if isinstance(transp, Connection):
            return await sendfile.sendfile_fallback(self, transp, file, offset, count)
        return await super()._sendfile_fallback(  # type: ignore[misc]
            transp, file, offset, count)

    # -- Unix sockets (asyncio keeps these in its Unix loop, not BaseEventLoop)

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        if not ssl and (server_hostname or ssl_handshake_timeout or ssl_shutdown_timeout):
            raise ValueError("server_hostname and the ssl timeouts are only meaningful with ssl")
        if ssl and server_hostname is None:
            raise ValueError("you have to pass server_hostname when using ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, os.fspath(path))
            except BaseException:
                sock.close()
                raise
        elif sock is None:
            raise ValueError("no path and sock were specified")
        elif sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100,
                                 ssl=None, ssl_handshake_timeout=None,
                                 ssl_shutdown_timeout=None, start_serving=True):
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if not ssl and (ssl_handshake_timeout is not None or ssl_shutdown_timeout is not None):
            raise ValueError("the ssl timeouts are only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if path[0] not in (0, "\0"):   # not abstract: a stale socket file goes
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
        elif sock is None:
            raise ValueError("path was not specified, and no sock specified")
        elif sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory, ssl, backlog,
                                    ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server

    # -- serving ---------------------------------------------------------------

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT) -> None:
        accepted = functools.partial(self._accepted, protocol_factory, sock, sslcontext, server,
                                     ssl_handshake_timeout, ssl_shutdown_timeout)
        self._core.accept(sock, accepted, shared=is_shared(sock))

    def _accepted(self, protocol_factory, lsock, sslcontext, server, handshake_timeout,
                  shutdown_timeout, fd) -> None:
        if not isinstance(fd, int):
            self._accept_failed(lsock, fd, functools.partial(
                self._start_serving, protocol_factory, lsock, sslcontext, server, 100,
                handshake_timeout, shutdown_timeout))
            return
        conn = socket.socket(lsock.family, lsock.type, lsock.proto, fileno=fd)
        if server is not None and not server.is_serving():
            # Accepted as the server closed (io_uring's accept raced its
            # cancel; the listener may be shared, so the client is served
            # rather than dropped): a connection of no server's count.
            server = None
        protocol = None
        try:
            protocol = protocol_factory()
            if sslcontext:
                self._make_ssl_transport(conn, protocol, sslcontext, server_side=True,
                                         server=server,
                                         ssl_handshake_timeout=handshake_timeout,
                                         ssl_shutdown_timeout=shutdown_timeout)
            else:
                self._make_socket_transport(conn, protocol, server=server)
        except Exception as exc:
            conn.close()
            self.call_exception_handler({
                "message": "Error on transport creation for incoming connection",
                "exception": exc, "protocol": protocol})

    def _accept_failed(self, lsock: socket.socket, exc: OSError, restart: Callable) -> None:
        # Accepting has stopped. Out of fds: say so and try again later; the
        # backlog holds new clients meanwhile (as asyncio's own loop does).
        if lsock.fileno() == -1:
            return   # the server was closed
        self.call_exception_handler({
            "message": "socket.accept() out of system resource"
                       if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
                       else "Error on accepting a connection",
            "exception": exc, "socket": trsock.TransportSocket(lsock)})
        self.call_later(ACCEPT_RETRY_DELAY, restart)

    def _stop_serving(self, sock: socket.socket) -> None:
        # As asyncio's loops: the fd is closed, and the listening socket is
        # not shut down, for it may be shared (a pre-fork server's workers,
        # gunicorn's, a socket systemd handed in): shutdown(2) would stop
        # every process's accepting. (On io_uring the cancelled accept holds
        # the socket a turn longer; a connection it takes meanwhile is closed.)
        self._core.cancel_accept(sock)
        sock.close()

    # -- socket operations ---------------------------------------------------

    def _check_sock(self, sock: socket.socket) -> None:
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() == -1:
            # What asyncio's loop raises here: its first try at the call
            # (sock.recv(), sock.send(), ...) meets the closed socket.
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    # Discussion: a socket closed behind the loop's back. The caller may
    # close a socket while one of its sock_* calls waits; nothing tells the
    # loop. On asyncio's loop the wait just goes on (epoll forgets a closed
    # fd) until the caller cancels it, and the cancel lets go of the fd.
    # So here: each wait remembers the fd it started on and stops *that*
    # when cancelled -- sock.fileno() is -1 by then, and the number may
    # already be a new socket's. (On io_uring an operation in flight holds
    # the socket itself, so the peer sees it closed only once the cancel
    # ends that operation; on epoll, at close, as on asyncio's loop.)

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        self._check_sock(sock)
        reader = self._sock_readers.get(sock)
        if reader is None:
            reader = self._sock_readers[sock] = _SockReader()
        if reader.held:   # what a receive brought after its caller left comes first
            return reader.take(n)
        fut = self.create_future()
        reader.waiter, reader.n = fut, n
        if not reader.in_flight:
            # (else the receive in flight, whose caller was cancelled, is this
            # call's now: as asyncio's loop, a new sock_recv takes over.)
            reader.in_flight, reader.fd = True, sock.fileno()
            self._core.recv(reader.fd, n, functools.partial(self._sock_received, sock, reader))
        try:
            return await fut
        except asyncio.CancelledError:
            if reader.waiter is fut:
                reader.waiter = None
                if reader.in_flight:
                    # Cancel the receive. Its buffer stays the kernel's until
                    # the cancelled operation's completion (the core's
                    # ownership rule); bytes it brings meanwhile are held for
                    # the next call.
                    self._core.stop_recv(reader.fd)
            raise

    def _sock_received(self, sock: socket.socket, reader: _SockReader, result) -> None:
        reader.in_flight = False
        fut, reader.waiter = reader.waiter, None
        if fut is None or fut.done():
            if not _is_cancel(result):
                reader.held.append(result)
        elif _is_cancel(result):
            # Cancelled for a caller who has left since, and taken over by
            # this one: ask again -- unless the socket was closed meanwhile;
            # then the caller waits, as on asyncio's loop, until cancelled.
            reader.waiter = fut
            if sock.fileno() == reader.fd:
                reader.in_flight = True
                self._core.recv(reader.fd, reader.n,
                                functools.partial(self._sock_received, sock, reader))
        elif isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            # (held is empty while someone waits) what is more than this
            # caller asked for -- a taken-over receive's -- stays held
            reader.held.append(result)
            fut.set_result(reader.take(reader.n))

    async def sock_recv_into(self, sock: socket.socket, buf) -> int:
        data = await self.sock_recv(sock, len(memoryview(buf)))
        memoryview(buf).cast("B")[:len(data)] = data
        return len(data)

    async def sock_sendall(self, sock: socket.socket, data) -> None:
        # As asyncio's loop: send at once what the socket takes, then send
        # the rest each time it is writable (the core's watch). Not one
        # core send operation: that could not be withdrawn when the caller
        # is cancelled, and its bytes would go on out -- after a close, to
        # whatever socket gets the fd number next (epoll), or holding the
        # closed socket open (io_uring). A cancelled call stops where it is,
        # as on asyncio's loop; what it sent is sent.
        self._check_sock(sock)
        writer = self._sock_writers.get(sock)
        if writer is None:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data).cast("B")[sent:]
        else:
            # Behind the sends already waiting, whole and in order (beyond
            # asyncio's loop, whose second waiting sock_sendall on a socket
            # replaces the first). Copied: the caller may change it meanwhile.
            data = bytes(data)
        fut = self.create_future()
        if writer is None:
            writer = _SockWriter(sock.fileno())
            self._add_watch(writer.fd, True, self._sock_writable, (sock, writer))
            self._sock_writers[sock] = writer
        writer.queue.append([data, fut])
        fut.add_done_callback(functools.partial(self._sock_send_over, sock, writer))
        await fut

    def _sock_writable(self, sock: socket.socket, writer: _SockWriter) -> None:
        queue = writer.queue
        while queue:
            entry = queue[0]
            data, fut = entry
            if fut.done():   # (cancelled: _sock_send_over takes it out)
                queue.popleft()
                continue
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                queue.popleft()
                fut.set_exception(exc)
                continue
            if sent < len(data):
                entry[0] = memoryview(data).cast("B")[sent:]
                return
            queue.popleft()
            fut.set_result(None)
        self._sock_writer_done(sock, writer)

    def _sock_send_over(self, sock: socket.socket, writer: _SockWriter,
                        fut: asyncio.Future) -> None:
        # A cancelled call leaves the queue now, and the watch goes with
        # the last one: once the caller is back from its CancelledError the
        # loop neither writes to the socket nor holds its fd.
        if fut.cancelled():
            for entry in writer.queue:
                if entry[1] is fut:
                    writer.queue.remove(entry)
                    break
            if not writer.queue:
                self._sock_writer_done(sock, writer)

    def _sock_writer_done(self, sock: socket.socket, writer: _SockWriter) -> None:
        if self._sock_writers.get(sock) is writer:
            del self._sock_writers[sock]
            if self._fd_watches[True].get(writer.fd) is not None:
                self._remove_watch(writer.fd, True)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        self._check_sock(sock)
        fut = self.create_future()
        self._core.accept(sock, functools.partial(resolve, fut), once=True)
        try:
            fd = await fut
        except asyncio.CancelledError:
            self._core.cancel_accept(sock)
            raise
        conn = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
        conn.setblocking(False)
        try:
            return conn, conn.getpeername()
        except OSError:   # already reset by the peer: it has no name to give
            return conn, None

    async def sock_connect(self, sock: socket.socket, address) -> None:
        self._check_sock(sock)
        if sock.family != getattr(socket, "AF_UNIX", -1):
            resolved = await self._ensure_resolved(address, family=sock.family,
                                                   type=sock.type, proto=sock.proto, loop=self)
            address = resolved[0][4]
        fut = self.create_future()
        self._core.connect(sock, address, functools.partial(resolve, fut))
        try:
            await fut
        finally:
            # A failed connect's exception holds this frame (its traceback),
            # which held the future, which holds the exception: a cycle that
            # only the garbage collector would free. asyncio breaks it so.
            del fut

    # -- signals -------------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., object],  # type: ignore[override]
                           *args: Any) -> None:
        """Run ``callback(*args)`` on the loop when ``sig`` arrives. From the
        main thread only."""
        _check_signal(sig)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("add_signal_handler() works only in the main thread")
        self._check_closed()
        handle = events.Handle(callback, args, self, None)
        try:
            signal.signal(sig, lambda _signum, _frame: self._add_callback_signalsafe(handle))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        signal.siginterrupt(sig, False)   # system calls go on; the wakeup does the rest
        self._core.wake_on_signals(True)
        self._signal_handlers[sig] = handle

    def remove_signal_handler(self, sig: int) -> bool:
        _check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        if not self._signal_handlers and not self._core.is_closed():
            self._core.wake_on_signals(False)
        return True


class Transport(Connection):
    """The loop's socket transport: a uringio Connection that, as asyncio's
    transports do, still sends what is written between close() and the
    connection's end."""

    __slots__ = ()
    _writes_after_close = True


class _SockReader:
    """One socket's ``sock_recv``: whether a receive is in flight (on which
    fd), who waits for it, and what arrived with nobody waiting (bytes, EOF
    or an error), which the next call gets first."""

    __slots__ = ("in_flight", "fd", "waiter", "n", "held")

    def __init__(self) -> None:
        self.in_flight = False
        self.fd = -1
        self.waiter: asyncio.Future | None = None
        self.n = 0
        self.held: list[bytes | BaseException] = []

    def take(self, n: int) -> bytes:
        item = self.held.pop(0)
        if isinstance(item, BaseException):
            raise item
        if len(item) > n:
            self.held.insert(0, item[n:])
            item = item[:n]
        return item


class _SockWriter:
    """One socket's ``sock_sendall`` calls that wait for room: the fd its
    watch is on, and each call's bytes not yet sent with its future, in
    the order they were made. The first one is being sent."""

    __slots__ = ("fd", "queue")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: deque[list] = deque()   # [bytes or memoryview left, future]


def _is_cancel(result: object) -> bool:
    return isinstance(result, OSError) and result.errno == errno.ECANCELED


def _check_signal(sig: object) -> None:
    # As asyncio's Unix loop checks it.
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")


def _detach(server: Any, conn: Connection) -> None:
    server._detach()
