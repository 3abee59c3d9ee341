"""Serving an ASGI app: ``python -m uringio serve asgi MODULE:APP`` and
``uringio.serve_asgi(app, ...)``.

Each worker process runs uringio's asyncio loop (``uringio.aio``) on the
backend asked for, the app's lifespan startup, then its listener, until
SIGINT or SIGTERM; then it stops accepting, lets the requests in flight
finish (``drain_timeout`` at most), closes idle connections and runs the
lifespan shutdown. With ``workers`` other than 1, the ``multi`` model's
supervisor forks the workers, each on its own SO_REUSEPORT listener.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from ..aio import run as aio_run
from ..models.supervisor import Supervisor
from ..net.server import listen
from .http import HttpProtocol, ServerState
from .lifespan import Lifespan, LifespanFailed

log = logging.getLogger("uringio.asgi")


class AppImportError(ImportError):
    """MODULE:APP names nothing importable, or nothing callable."""


def import_app(target: str, app_dir: str = ".") -> Callable:
    """The app ``target`` ("MODULE:ATTR", ATTR dotted) names, with MODULE
    found from ``app_dir`` first, as uvicorn finds it."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise AppImportError(f"expected MODULE:APP (say main:app), got {target!r}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # MODULE itself, or a package on its way, is missing: not a module
        # whose name merely begins with what is (app_main importing app).
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppImportError(f"no module {module_name!r} under {path}") from exc
        raise   # the module itself imports something missing: its traceback says what
    app: Any = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no {attr!r}") from None
    if not callable(app):
        raise AppImportError(f"{target!r} is not callable (an ASGI app is)")
    return app


class Listening:
    """What ``on_listening`` is told: where, and on which backend."""

    def __init__(self, address: tuple, backend: str) -> None:
        self.address = address
        self.backend = backend


def serve_asgi(app, host: str = "127.0.0.1", port: int = 8000, *, backend: str = "auto",
               workers: int = 1, on_listening=None, drain_timeout: float = 5.0,
               reuse_port: bool = False, **settings: Any) -> int:
    """Serve ``app`` until SIGINT or SIGTERM; returns the exit status.

    ``workers`` 1 serves in this process; any other number forks that many
    workers (0: one per CPU) after the port is reserved, each with its own
    loop and lifespan (sharing the port with SO_REUSEPORT, which
    ``reuse_port`` also sets for a single process, so that other servers
    can share it). ``settings`` go to ``ServerState``: ``root_path``,
    ``max_body``, ``max_head``, ``header_timeout``, ``keep_alive``,
    ``limit_concurrency``, ``access_log``, ``proxy_headers``,
    ``forwarded_allow_ips``, ``ws_max_message``."""
    if workers == 1:
        sock = listen(host, port, reuse_port=reuse_port)
        return _serve_worker(app, sock, backend, on_listening, drain_timeout, settings)

    def serve_worker(worker_port: int, worker_listening) -> None:
        sock = listen(host, worker_port, reuse_port=True)
        status = _serve_worker(app, sock, backend, worker_listening, drain_timeout, settings)
        if status:
            raise SystemExit(status)

    return Supervisor(serve_worker, workers, host, port, drain_timeout).run(on_listening)


def _serve_worker(app, sock: socket.socket, backend: str, on_listening, drain_timeout: float,
                  settings: dict) -> int:
    try:
        return aio_run(_serve(app, sock, on_listening, drain_timeout, settings),
                       backend=backend)
    finally:
        sock.close()


async def _serve(app, sock: socket.socket, on_listening, drain_timeout: float,
                 settings: dict) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    lifespan = Lifespan(app)
    try:
        await lifespan.startup()
    except LifespanFailed as exc:
        log.error("the ASGI app's lifespan startup failed: %s", exc)
        return 3
    state = ServerState(app, state=lifespan.state, **settings)
    state.start_sweeping(loop)
    server = await loop.create_server(lambda: HttpProtocol(state), sock=sock, backlog=4096)
    if on_listening is not None:
        on_listening(Listening(sock.getsockname()[:2], getattr(loop, "backend", "asyncio")))
    await stop.wait()
    server.close()   # no new connections
    for conn in list(state.connections):
        conn.shutdown()
    if state.tasks:
        await asyncio.wait(list(state.tasks), timeout=drain_timeout)
    for conn in list(state.connections):
        if conn.transport is not None:
            conn.transport.abort()   # past the drain: cut short, and said so
    for task in list(state.tasks):
        task.cancel()
    state.stop_sweeping()
    await lifespan.shutdown()
    return 0
