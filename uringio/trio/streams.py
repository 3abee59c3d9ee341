"""trio streams on completions: ``SocketStream`` is a
``trio.abc.HalfCloseableStream`` whose ``receive_some`` takes what the
loop's receive stream already received (a multishot receive over the
buffer ring on io_uring) and whose ``send_all`` hands the bytes to the
loop's send stream (coalesced into one send per turn), with no recv or
send system call of its own -- where trio's ``SocketStream`` makes one per
call. It is a uringio ``Connection`` underneath; a task waits on it only
when nothing is buffered (receiving) or the send buffer is above its high
water (sending), and is woken by the run's ``IOManager`` in the turn the
completion arrives.

``open_tcp_stream``, ``open_unix_socket``, ``open_tcp_listeners`` and
``serve_tcp`` are trio's, with these streams: trio connects, resolves and
accepts; the bytes go through uringio. They need a run of
``uringio.trio.run``.
"""

from __future__ import annotations

import operator
import socket as stdlib_socket
from collections import deque
from typing import Any

import outcome
import trio
from trio import lowlevel

from ..net.connection import Connection, Protocol
from .manager import IOManager

# Received bytes held for receive_some above which the socket is no
# longer read (TCP slows the peer), and below which reading resumes.
RECEIVE_HIGH_WATER = 256 * 1024
RECEIVE_LOW_WATER = 64 * 1024


def _manager() -> IOManager:
    try:
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from inside a trio run") from None
    manager = runner.io_manager
    if not isinstance(manager, IOManager) or runner.is_guest:
        # (a guest run's waiting thread does not see their completions)
        raise RuntimeError("uringio.trio's streams and files run under uringio.trio.run (its "
                           "IO manager receives and sends for them), not trio.run or a guest "
                           "run")
    return manager


class _Side:
    """One direction's waiting task (trio: one task per direction)."""

    __slots__ = ("task", "what")

    def __init__(self, what: str) -> None:
        self.task: lowlevel.Task | None = None
        self.what = what


class SocketStream(trio.abc.HalfCloseableStream, Protocol):
    """A connected socket (TCP or Unix) as a trio stream, its bytes moved by
    the loop of the run's ``IOManager``. Takes ``sock`` over."""

    def __init__(self, sock: stdlib_socket.socket | trio.socket.SocketType) -> None:
        if isinstance(sock, trio.socket.SocketType):
            sock = stdlib_socket.socket(sock.family, sock.type, sock.proto, sock.detach())
        sock.setblocking(False)
        if sock.family in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        self.socket = sock
        self._manager = _manager()
        self._received: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None   # what ended the connection
        self._closed = False                        # aclose() was called
        self._eof_sent = False                      # send_eof() was called
        self._writing_paused = False
        self._receiver = _Side("receiving")
        self._sender = _Side("sending")
        self._conn = Connection(self._manager.loop, sock.fileno(), self, sock=sock)
        self._conn.start()

    # -- the connection's calls (uringio Protocol) --------------------------------

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._size += len(data)
        if self._size > RECEIVE_HIGH_WATER:
            self._conn.pause_reading()
        self._wake(self._receiver)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake(self._receiver)
        return True   # half-closed: we may still send

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = exc or ConnectionResetError("the connection closed")
        self._wake(self._receiver)
        self._wake(self._sender)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake(self._sender)

    def _wake(self, side: _Side) -> None:
        # Called from the loop's turn, inside the manager's get_events.
        task, side.task = side.task, None
        if task is not None:
            self._manager.wake(task)

    async def _wait(self, side: _Side) -> None:
        side.task = lowlevel.current_task()

        def abort(_: Any) -> lowlevel.Abort:
            side.task = None
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)

    def _enter(self, side: _Side) -> None:
        if side.task is not None:
            raise trio.BusyResourceError(f"another task is already {side.what} on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")

    # -- trio.abc.ReceiveStream ---------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)   # (TypeError for 1.5)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        self._enter(self._receiver)
        await lowlevel.checkpoint_if_cancelled()
        waited = False
        while not self._received and not self._eof and self._error is None:
            await self._wait(self._receiver)
            waited = True
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed while receiving")
        if self._received:
            data = self._take(max_bytes)
        elif self._eof:
            data = b""
        else:
            raise trio.BrokenResourceError(f"the connection ended: {self._error!r}") \
                from self._error
        if not waited:   # (a wait is a checkpoint already: one scheduler pass, not two)
            await lowlevel.cancel_shielded_checkpoint()
        return data

    def _take(self, max_bytes: int | None) -> bytes:
        received = self._received
        if max_bytes is None or self._size <= max_bytes:
            data = received.popleft() if len(received) == 1 else b"".join(received)
            received.clear()
        else:
            first = received[0]
            if len(first) > max_bytes:
                data, received[0] = first[:max_bytes], first[max_bytes:]
            else:
                pieces = []
                left = max_bytes
                while received and len(received[0]) <= left:
                    pieces.append(received.popleft())
                    left -= len(pieces[-1])
                data = b"".join(pieces)
        self._size -= len(data)
        if self._size <= RECEIVE_LOW_WATER and not self._conn.is_reading() and \
                self._error is None and not self._eof:
            self._conn.resume_reading()
        return data

    # -- trio.abc.SendStream ------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._enter(self._sender)
        await lowlevel.checkpoint_if_cancelled()
        self._check_sendable()
        if data:
            self._conn.write(bytes(data) if not isinstance(data, bytes) else data)
        waited = await self._room()
        self._check_sendable()
        if not waited:
            await lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        self._enter(self._sender)
        await lowlevel.checkpoint_if_cancelled()
        await self._room()
        await lowlevel.cancel_shielded_checkpoint()

    async def _room(self) -> bool:
        # Until the send buffer is below its high water (or the stream is
        # over): whether that took a wait.
        waited = False
        while self._writing_paused and self._error is None and not self._closed:
            await self._wait(self._sender)
            waited = True
        return waited

    def _check_sendable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        if self._error is not None:
            raise trio.BrokenResourceError(f"the connection ended: {self._error!r}") \
                from self._error
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called")

    async def send_eof(self) -> None:
        self._enter(self._sender)
        await lowlevel.checkpoint_if_cancelled()
        if self._error is None and not self._eof_sent and not self._closed:
            self._eof_sent = True
            self._conn.write_eof()
        await lowlevel.cancel_shielded_checkpoint()

    # -- closing ------------------------------------------------------------------

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._received or not self._conn.is_reading():
                # Bytes received and never read: as the kernel does when a
                # socket closes with its receive queue not empty, a reset
                # (the peer learns at once that they went unread).
                self._conn.abort()
            else:
                self._conn.close()   # what is queued is sent, then the FIN, in the background
            for side in (self._receiver, self._sender):
                task, side.task = side.task, None
                if task is not None:
                    lowlevel.reschedule(task, outcome.Error(
                        trio.ClosedResourceError("the stream was closed by another task")))
        await lowlevel.checkpoint()

    # -- socket options, as trio.SocketStream has them ---------------------------

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.socket.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        if buffersize:
            return self.socket.getsockopt(level, option, buffersize)
        return self.socket.getsockopt(level, option)


class SocketListener(trio.abc.Listener[SocketStream]):
    """trio's accepting, uringio's streams: wraps a listening trio socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock

    async def accept(self) -> SocketStream:
        sock, _ = await self.socket.accept()
        return SocketStream(sock)

    async def aclose(self) -> None:
        self.socket.close()
        await lowlevel.checkpoint()


async def open_tcp_stream(host: str | bytes, port: int, **kwargs: Any) -> SocketStream:
    """``trio.open_tcp_stream`` (its resolving and Happy Eyeballs), the
    connected socket then a uringio stream."""
    stream = await trio.open_tcp_stream(host, port, **kwargs)
    return SocketStream(stream.socket)


async def open_unix_socket(path: str | bytes) -> SocketStream:
    stream = await trio.open_unix_socket(path)
    return SocketStream(stream.socket)


async def open_tcp_listeners(port: int, *, host: str | bytes | None = None,
                             backlog: int | None = None) -> list[SocketListener]:
    return [SocketListener(listener.socket) for listener in
            await trio.open_tcp_listeners(port, host=host, backlog=backlog)]


async def serve_tcp(handler: Any, port: int, *, host: str | bytes | None = None,
                    backlog: int | None = None, handler_nursery: trio.Nursery | None = None,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """``trio.serve_tcp`` with uringio's streams (``task_status.started``
    gets the listeners)."""
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await trio.serve_listeners(handler, listeners, handler_nursery=handler_nursery,
                               task_status=task_status)
