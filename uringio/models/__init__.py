"""The server models, for both backends, behind one call.

* ``single``: one loop does accept, IO and the application callbacks.
* ``pool``: one loop does IO; ``@blocking`` work runs in worker threads.
* ``multi``: N worker processes, each a ``single`` (or ``pool``) server on
  its own SO_REUSEPORT listener (or all on one Unix or inherited socket),
  under a supervisor.
* ``threads``: a thread per connection with blocking IO: the baseline.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Callable
from typing import Any

from ..net.connection import Protocol
from ..net.listeners import DEFAULT_BACKLOG, Bind
from ..net.tls import TLSLayer
from .single import run_server
from .supervisor import Supervisor
from .threaded import run_threaded_server

MODELS = ("single", "pool", "multi", "threads")
DEFAULT_THREADS = 4


def serve(protocol_factory: Callable[[], Protocol], host: str = "127.0.0.1", port: int = 0, *,
          backend: str = "auto", model: str = "single", workers: int = 0,
          threads: int | None = None,
          on_listening=None, drain_timeout: float = 5.0, idle_timeout: float | None = None,
          reuse_port: bool = False, uds: str | None = None, uds_perms: int | None = None,
          fd: int | None = None, backlog: int = DEFAULT_BACKLOG,
          ssl: _ssl.SSLContext | None = None, handshake_timeout: float = 10.0) -> int:
    """Serve ``protocol_factory`` until SIGINT or SIGTERM under ``model``.

    ``threads`` is the pool size of ``pool`` (default 4), and makes each
    ``multi`` worker a ``pool`` server when given there; ``workers`` the process count of ``multi``
    (0: one per CPU). ``on_listening(server)`` runs once connections are
    accepted; ``server.address`` and ``server.backend`` say where and how.
    It listens on ``uds`` (a Unix socket path, mode ``uds_perms``) or
    ``fd`` (a socket handed in) when given, else on the socket systemd's
    socket activation hands (``LISTEN_FDS``), else on ``host``:``port``.
    With ``ssl``, every connection speaks TLS (a handshake not done in
    ``handshake_timeout`` seconds is closed): through ``TLSLayer`` on the
    loop models, an ``ssl.SSLSocket`` under ``threads``.
    Returns the exit status. Raises ValueError for an unknown model.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    plain_factory = protocol_factory
    if ssl is not None and model != "threads":
        context = ssl

        def protocol_factory() -> Any:
            return TLSLayer(context, plain_factory(), handshake_timeout)
    bind = Bind(host, port, uds, uds_perms, fd, backlog).resolved()
    options: dict[str, Any] = dict(drain_timeout=drain_timeout, idle_timeout=idle_timeout)
    if model == "multi":
        def serve_worker(listener, worker_listening) -> None:
            run_server(protocol_factory, backend=backend, on_listening=worker_listening,
                       threads=threads or 0, sock=listener, **options)
        return Supervisor(serve_worker, workers, bind, drain_timeout).run(on_listening)
    sock = bind.open(reuse_port=reuse_port)
    try:
        if model == "threads":
            run_threaded_server(protocol_factory, on_listening=on_listening,
                                drain_timeout=drain_timeout, sock=sock, ssl=ssl,
                                handshake_timeout=handshake_timeout)
        else:
            run_server(protocol_factory, backend=backend, on_listening=on_listening,
                       threads=(threads or DEFAULT_THREADS) if model == "pool" else 0,
                       sock=sock, **options)
    finally:
        bind.release(sock)
    return 0
