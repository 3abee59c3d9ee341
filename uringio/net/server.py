"""Server: a listening socket on a loop, making a Connection per client."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable

from .connection import Connection, Protocol
from .listeners import address_of, is_shared

log = logging.getLogger("uringio")

# How long accepting pauses when the process or system is out of fds.
ACCEPT_RETRY_DELAY = 0.1


class Server:
    """Accepts connections on ``sock`` and runs ``protocol_factory()`` for each."""

    def __init__(self, loop, protocol_factory: Callable[[], Protocol], sock: socket.socket,
                 idle_timeout: float | None = None, pool=None) -> None:
        self.loop = loop
        self.sock = sock
        self._factory = protocol_factory
        self.idle_timeout = idle_timeout
        self.pool = pool
        self.connections: set[Connection] = set()
        self._forget = self.connections.discard   # one bound method for all connections
        self._accepting = False
        self._closed = False

    @property
    def address(self) -> tuple | str:
        return address_of(self.sock)

    @property
    def backend(self) -> str:
        return self.loop.backend

    def start(self) -> Server:
        self._accepting = True
        self._accept()
        return self

    def _accept(self) -> None:
        self.loop.accept(self.sock, self._on_accept, shared=is_shared(self.sock))

    def _on_accept(self, fd) -> None:
        if fd.__class__ is not int:
            self._accept_failed(fd)
            return
        if self._closed:   # accepted as the server closed (uring's accept raced its cancel)
            os.close(fd)
            return
        conn = Connection(self.loop, fd, self._factory(), self._forget,
                          self.idle_timeout, self.pool)
        self.connections.add(conn)
        conn.start()

    def _accept_failed(self, exc: OSError) -> None:
        # Accepting has stopped. Out of fds: say so, wait, try again; the
        # backlog holds new clients meanwhile. Anything else is logged too:
        # a server that stops accepting silently is worse than a noisy one.
        if self._closed:
            return
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            log.warning("accept failed (%s); pausing accepts for %.1fs", exc, ACCEPT_RETRY_DELAY)
        else:
            log.error("accept failed (%s); retrying in %.1fs", exc, ACCEPT_RETRY_DELAY)
        self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if not self._closed:
            self._accept()

    def close(self) -> None:
        """Stop accepting and close every connection (queued writes are sent
        first by each connection's close)."""
        if self._closed:
            return
        self._closed = True
        self.loop.cancel_accept(self.sock)
        for conn in list(self.connections):
            conn.close()
        self.sock.close()
