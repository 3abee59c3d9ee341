"""A TCP proxy: each client connection relayed to one upstream address.

Both directions are ``loop.relay``: splice(2) through a pipe, the bytes
never in Python (``_core/relay.py``), on io_uring as linked submissions and
on epoll as readiness then splice calls. What passes through besides bytes:

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

# How the bytes of a pair move: "copy", through the loop's receive buffers
# and send streams; "splice", through a pipe, never in user memory
# (loop.relay). benchmarks/proxy_bench.py measures both; docs/proxy.md
# says which wins where.
RELAYS = ("copy", "splice")

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
    return partial(ProxyProtocol, resolve(host, port), relay == "splice")


class ProxyProtocol(Protocol):
    """A client connection until its upstream connection is made; then the
    pair's state, whichever way its bytes are relayed."""

    __slots__ = ("_target", "_splice", "_loop", "client", "upstream", "_sock", "_open")

    def __init__(self, target: tuple[int, tuple], splice: bool = False) -> None:
        self._target = target
        self._splice = splice
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
        if self._splice:
            upstream = self.upstream = Connection(loop, sock.fileno(), Protocol(), sock=sock)
            upstream.start(reading=False)
            loop.relay(client.fd, upstream.fd, partial(self._relayed, upstream))
            loop.relay(upstream.fd, client.fd, partial(self._relayed, client))
        else:
            upstream = self.upstream = Connection(loop, sock.fileno(), _Copy(self, client),
                                                  sock=sock)
            client.set_protocol(_Copy(self, upstream))
            upstream.start()
            client.resume_reading()

    def _relayed(self, receiver: Connection, res) -> None:
        # A splice relay into ``receiver`` is over: at its sender's EOF, pass it on.
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
        # or while splice relays run: an upstream connect still in flight
        # is cancelled with its socket.
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.close_fd(sock.detach())
        self.lost(exc)


class _Copy(Protocol):
    """A connection of a pair whose bytes are copied: what it receives is
    written to its peer. On uring that is two C paths and no Python frame
    per chunk: the receive stream hands each chunk straight to the peer's
    ``write``."""

    __slots__ = ("pair", "peer", "data_received")

    def __init__(self, pair: ProxyProtocol, peer: Connection) -> None:
        self.pair = pair
        self.peer = peer
        self.data_received = peer.write   # type: ignore[method-assign]

    def eof_received(self) -> bool:
        self.pair.half_closed(self.peer)
        return True   # the other direction may go on

    # Our writes back up: stop reading what feeds them, the peer.
    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(exc)
