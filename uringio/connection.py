"""Connection and Protocol: the layer applications write against.

The vocabulary is asyncio's (``connection_made``, ``data_received``,
``eof_received``, ``connection_lost``; ``write``, ``close``, ``abort``), so
habits carry over. Underneath, a Connection drives the loop's completion
interface and keeps its rules: one receive stream and at most one send in
flight per socket; writes made while a send is in flight are queued and go
out together as the next send.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable

log = logging.getLogger("uringio")


class Protocol:
    """Base class for connection callbacks; override what you need."""

    def connection_made(self, conn: "Connection") -> None:
        """The connection is up; ``conn`` is its Connection."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived. ``data`` is the caller's to keep."""

    def eof_received(self) -> bool | None:
        """The peer closed its sending side. Return a true value to keep the
        connection open for writing; otherwise it is closed after the queued
        writes are sent."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is closed: ``exc`` is None for a clean close, else
        the error that ended it."""


class Connection:
    """One TCP connection on a loop. Not thread-safe: use it from the loop."""

    __slots__ = ("_loop", "fd", "_protocol", "_sending", "_queue", "_closing",
                 "_closed", "_exc", "_on_closed", "__weakref__")

    def __init__(self, loop, fd: int, protocol: Protocol,
                 on_closed: Callable[["Connection"], None] | None = None) -> None:
        self._loop = loop
        self.fd = fd
        self._protocol = protocol
        self._sending = False
        self._queue: list[bytes] = []
        self._closing = False
        self._closed = False
        self._exc: Exception | None = None
        self._on_closed = on_closed

    def start(self) -> None:
        """Tell the protocol, then start receiving."""
        self._protocol.connection_made(self)
        if not self._closing:
            self._loop.start_recv(self.fd, self._on_recv)

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def peername(self):
        """The peer's (host, port)."""
        sock = socket.socket(fileno=self.fd)
        try:
            return sock.getpeername()
        finally:
            sock.detach()

    def is_closing(self) -> bool:
        return self._closing

    # -- receiving -----------------------------------------------------------

    def _on_recv(self, data) -> None:
        # The loop's receive handler: bytes, b"" at EOF, or an OSError.
        if data.__class__ is bytes:
            if data:
                self._protocol.data_received(data)
                return
            if self._closed:
                return
            if not self._protocol.eof_received():
                self.close()
            return
        self._fail(data)

    # -- sending -------------------------------------------------------------

    def write(self, data) -> None:
        """Queue ``data`` for sending. Writes made while a send is in flight
        go out together in the next send, in order."""
        if self._closing:
            if self._closed:
                return
            raise RuntimeError("write() after close()")
        if self._sending:
            self._queue.append(data if data.__class__ is bytes else bytes(data))
        elif data:
            self._sending = True
            self._loop.send(self.fd, data, self._on_sent)

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def _on_sent(self, res) -> None:
        if res.__class__ is not int:
            self._fail(res)
            return
        queue = self._queue
        if queue:
            data = b"".join(queue) if len(queue) > 1 else queue[0]
            queue.clear()
            self._loop.send(self.fd, data, self._on_sent)
            return
        self._sending = False
        if self._closing and not self._closed:
            self._finish()

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Close after the queued writes are sent."""
        if self._closing:
            return
        self._closing = True
        if not self._sending:
            self._finish()

    def abort(self) -> None:
        """Close now, dropping queued writes."""
        self._closing = True
        self._finish()

    def _fail(self, exc: Exception) -> None:
        if self._closed:
            return
        self._exc = exc
        self._closing = True
        self._finish()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._loop.close_fd(self.fd)
        try:
            self._protocol.connection_lost(self._exc)
        finally:
            if self._on_closed is not None:
                self._on_closed(self)
