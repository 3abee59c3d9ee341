"""The ``single`` and ``pool`` models: one loop serving until a signal."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

from .._core.backend import open_loop
from ..net.connection import Protocol
from ..net.listeners import listen
from ..net.server import Server
from .pool import WorkerPool


def run_server(protocol_factory: Callable[[], Protocol], host: str = "127.0.0.1",
               port: int = 0, backend: str = "auto", on_listening=None,
               drain_timeout: float = 5.0, idle_timeout: float | None = None,
               threads: int = 0, reuse_port: bool = False, sock: socket.socket | None = None,
               **loop_options) -> None:
    """One loop serving until SIGINT or SIGTERM (the ``single`` model, or
    ``pool`` with ``threads`` > 0 worker threads for ``@blocking`` work),
    then close connections (letting queued writes drain for
    ``drain_timeout`` seconds) and release everything.
    ``on_listening(server)`` runs once the server accepts connections.
    ``sock``: a listening socket to serve instead of ``host``:``port``
    (closed at the end either way)."""
    loop = open_loop(backend, **loop_options)
    pool = WorkerPool(loop, threads) if threads else None
    try:
        if sock is None:
            sock = listen(host, port, reuse_port=reuse_port)
        server = Server(loop, protocol_factory, sock, idle_timeout, pool).start()
        # SIGHUP: a multi worker's supervisor has started its replacement.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, loop.stop)
        if on_listening is not None:
            on_listening(server)
        loop.run()
        server.close()
        loop.run_until(lambda: not server.connections, drain_timeout)
        for conn in list(server.connections):
            conn.abort()
    finally:
        if pool is not None:
            pool.shutdown()
        loop.close()
