"""A TCP proxy: each client connection relayed to one upstream address.

Both directions are ``loop.relay`` (``_core/relay.py``), the bytes never in
Python: via the loop's buffers ("copy": on io_uring a pump in C that sends
from the very buffer the kernel received into), or through a pipe
("splice"). What passes through besides bytes:

* backpressure: each direction reads only as fast as the other side takes;
* half-close: one side's EOF becomes a FIN to the other, and the pair
  ends once both directions have;
* resets: a reset (or any error) on either side resets the other, so that
  a stream cut short never looks complete to the peer that is left;
* an upstream that cannot be reached resets the client.

    python -m uringio serve proxy --port 8000 --to 127.0.0.1:8888
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from functools import partial

from ..net.connection import Connection, Protocol

log = logging.getLogger("uringio")

# How the bytes of a pair move: "copy", through buffers of the loop's
# (loop.relay via "buffers"); "splice", through a pipe, never in user
# memory. benchmarks/proxy_bench.py measures both; docs/proxy.md says
# which wins where.
RELAYS = {"copy": "buffers", "splice": "splice"}

# Errors that end proxied connections every day: not worth a log line.
_QUIET = (errno.ECANCELED, errno.ECONNRESET, errno.EPIPE)


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """``(family, address)`` of ``host:port``, resolved once, up front:
    a proxy should not ask DNS for every connection."""
    family, _type, _proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM)[0]
    return family, address


def proxy_factory(host: str, port: int, relay: str = "copy") -> Callable[[], ProxyProtocol]:
    """A protocol factory for ``serve``: each connection proxied to
    ``host:port``, its bytes moved by ``relay`` (RELAYS)."""
    if relay not in RELAYS:
        raise ValueError(f"unknown relay {relay!r}; expected one of {', '.join(RELAYS)}")
    return partial(ProxyProtocol, resolve(host, port), RELAYS[relay])


class ProxyProtocol(Protocol):
    """A client connection until its upstream connection is made; then the
    pair's state, whichever way its bytes are relayed."""

    __slots__ = ("_target", "_via", "_loop", "client", "upstream", "_sock", "_open")

    def __init__(self, target: tuple[int, tuple], via: str = "buffers") -> None:
        self._target = target
        self._via = via
        self.client: Connection | None = None
        self.upstream: Connection | None = None
        self._sock: socket.socket | None = None   # while the upstream connect is in flight
        self._open = 2   # directions not yet ended by an EOF

    def connection_made(self, conn) -> None:
        self.client = conn
        self._loop = conn.loop
        conn.pause_reading()   # until the upstream is connected
        family, address = self._target
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._loop.connect(sock, address, self._connected)

    def _connected(self, res) -> None:
        sock, self._sock = self._sock, None
        client = self.client
        if sock is None or client is None:
            return   # the client left first (connection_lost closed the socket)
        if res.__class__ is not int:
            log.warning("proxy: cannot reach %s: %s", self._target[1], res)
            sock.close()
            client.reset(res)
            return
        loop = self._loop
        upstream = self.upstream = Connection(loop, sock.fileno(), Protocol(), sock=sock)
        upstream.start(reading=False)
        # (The client's receive stream never started: paused in connection_made.)
        loop.relay(client.fd, upstream.fd, partial(self._relayed, upstream), via=self._via)
        loop.relay(upstream.fd, client.fd, partial(self._relayed, client), via=self._via)

    def _relayed(self, receiver: Connection, res) -> None:
        # A relay into ``receiver`` is over: at its sender's EOF, pass it on.
        if res.__class__ is int:
            self.half_closed(receiver)
        else:
            self.lost(res)

    def half_closed(self, receiver: Connection) -> None:
        """One side's EOF has reached ``receiver``'s queue: its FIN follows
        the bytes. The pair ends once both directions have."""
        receiver.write_eof()
        self._open -= 1
        if not self._open:
            self._close(Connection.close)

    def lost(self, exc: Exception | None) -> None:
        """One side is over. A clean end closes the other once its bytes
        are out; a reset or any failure resets it. ECANCELED: a side was
        closed under a relay (the server shutting down)."""
        if exc is None:
            self._close(Connection.close)
            return
        if not isinstance(exc, OSError) or exc.errno not in _QUIET:
            log.info("proxy: connection failed: %s", exc)
        self._close(partial(Connection.reset, exc=exc))

    def _close(self, how: Callable[[Connection], None]) -> None:
        for conn in (self.client, self.upstream):
            if conn is not None:
                how(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        # The client connection is over before the upstream one was made,
        # or while its relays run: an upstream connect still in flight
        # is cancelled with its socket.
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.close_fd(sock.detach())
        self.lost(exc)
