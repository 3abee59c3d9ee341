"""Serving an ASGI app: ``python -m uringio serve asgi MODULE:APP``, and
from Python as uvicorn's API has it: ``uringio.asgi.run(app, ...)``, or
``Config`` and ``await Server(config).serve()`` on a running loop.

Each worker process runs uringio's asyncio loop (``uringio.aio``) on the
backend asked for, the app's lifespan startup, then its listener, until
SIGINT or SIGTERM; then it stops accepting, lets the requests in flight
finish (``timeout_graceful_shutdown`` at most), closes idle connections and
runs the lifespan shutdown. With ``workers`` other than 1, the ``multi``
model's supervisor forks the workers, each on its own SO_REUSEPORT listener
(or all on the one Unix or inherited socket).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import random
import signal
import socket
import ssl as ssl_module
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..aio import run as aio_run
from ..models.supervisor import Supervisor, worker_retiring
from ..net.listeners import DEFAULT_BACKLOG, Bind, address_of, listen
from ..net.tls import DEFAULT_CIPHERS, TLSLayer, server_context
from .http import HttpProtocol, ServerState
from .lifespan import Lifespan, LifespanFailed
from .metrics import Board, Endpoint, MetricsProtocol, WorkerMetrics

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

    def __init__(self, address: tuple | str, backend: str) -> None:
        self.address = address
        self.backend = backend


LIFESPAN_MODES = ("auto", "on", "off")
DRAIN_POLL = 0.01   # how often a stopping server looks whether its connections are gone


class Config:
    """How to serve an ASGI app, as uvicorn's ``Config`` says it.

    ``app`` is the app, or "MODULE:APP" to import (from ``app_dir``);
    ``factory``: APP is a function of no arguments returning the app. The
    server listens on ``uds`` (a Unix socket path, mode ``uds_perms``) or
    ``fd`` (a socket handed in) when given, else on the socket systemd's
    socket activation hands, else on ``host``:``port``. ``workers`` other
    than 1 forks that many worker processes (0: one per CPU) under the
    ``multi`` model's supervisor. ``lifespan``: "auto" runs the app's
    lifespan if it speaks it, "on" requires it, "off" never runs it.
    ``timeout_graceful_shutdown``: how long requests in flight may finish
    after SIGINT/SIGTERM. The other keywords (``settings``) go to
    ``ServerState``: ``root_path``, ``max_body``, ``max_head``,
    ``header_timeout``, ``keep_alive``, ``limit_concurrency``,
    ``access_log``, ``proxy_headers``, ``forwarded_allow_ips``,
    ``ws_max_message``. ``limit_max_requests``: after that many requests
    (plus a random 0 to ``limit_max_requests_jitter``, so that workers do
    not all restart at once) a worker retires (stops accepting, answers
    what it has, exits), and the supervisor of ``workers`` > 1 (or
    gunicorn) starts a fresh one; ``max_worker_rss`` (bytes, with
    ``workers`` > 1): a worker whose resident memory passes it is replaced.
    ``metrics_port``: Prometheus text at ``http://metrics_host:port/metrics``
    (uringio.asgi.metrics), from the supervisor for every worker.
    ``ssl`` (an SSLContext), or ``ssl_certfile`` and the other ``ssl_``
    options as uvicorn's (uringio.net.tls), serve HTTPS and WSS.
    SIGHUP to a server of ``workers`` > 1 replaces every worker in turn,
    as does a change to a Python file under ``reload_dirs`` (the app,
    given by name, is then imported by each new worker, never by the
    supervisor).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, *,
                 uds: str | None = None, uds_perms: int | None = None, fd: int | None = None,
                 backlog: int = DEFAULT_BACKLOG, backend: str = "auto", workers: int = 1,
                 lifespan: str = "auto", factory: bool = False, app_dir: str = ".",
                 timeout_graceful_shutdown: float = 5.0, reuse_port: bool = False,
                 limit_max_requests: int | None = None, limit_max_requests_jitter: int = 0,
                 max_worker_rss: int | None = None, reload_dirs: list[str] | None = None,
                 ssl: ssl_module.SSLContext | None = None, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None, ssl_keyfile_password: str | None = None,
                 ssl_ca_certs: str | None = None, ssl_cert_reqs: int = ssl_module.CERT_NONE,
                 ssl_ciphers: str = DEFAULT_CIPHERS, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", **settings: Any) -> None:
        if lifespan not in LIFESPAN_MODES:
            raise ValueError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, "
                             f"not {lifespan!r}")
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise TypeError(f"unknown ASGI server settings: {', '.join(sorted(unknown))}")
        self.app, self.factory, self.app_dir = app, factory, app_dir
        self.bind = Bind(host, port, uds, uds_perms, fd, backlog)
        self.backend = backend
        self.workers = workers
        self.lifespan = lifespan
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self.reuse_port = reuse_port
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.max_worker_rss = max_worker_rss
        self.reload_dirs = reload_dirs
        if ssl is None and ssl_certfile is not None:
            ssl = server_context(ssl_certfile, ssl_keyfile, ssl_keyfile_password, ssl_ca_certs,
                                 ssl_cert_reqs, ssl_ciphers)
        self.ssl = ssl
        self.metrics_port, self.metrics_host = metrics_port, metrics_host
        # The figures' shared memory, made here: before any worker is forked.
        self.metrics_board = (Board(max(workers, 1) * 2 + 2)
                              if metrics_port is not None else None)
        self.settings = settings

    def load(self) -> Callable:
        """The app to serve: imported if named, made if ``factory``."""
        app = import_app(self.app, self.app_dir) if isinstance(self.app, str) else self.app
        if self.factory:
            try:
                app = app()
            except Exception as exc:
                raise AppImportError(f"the app factory {self.app!r} raised {exc!r}") from exc
            if not callable(app):
                raise AppImportError(f"the app factory {self.app!r} returned {app!r}, "
                                     "which is not an ASGI app")
        return app


SETTINGS = ("root_path", "max_body", "max_head", "header_timeout", "keep_alive",
            "limit_concurrency", "access_log", "proxy_headers", "forwarded_allow_ips",
            "ws_max_message")


class Server:
    """Serves one ``Config`` in this process: ``await server.serve()`` on the
    running loop (uringio's, for its speed: ``uringio.aio.run``), until
    SIGINT or SIGTERM or ``server.should_exit = True``; then it stops
    accepting, lets the requests in flight finish
    (``timeout_graceful_shutdown`` at most), closes idle connections and
    runs the lifespan shutdown. ``started`` is true while it accepts."""

    def __init__(self, config: Config, serves_metrics: bool = True) -> None:
        self.config = config
        # (a supervisor's worker leaves the metrics endpoint to the supervisor)
        self.serves_metrics = serves_metrics
        self.started = False
        self.exit_status = 0
        self._should_exit = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set from any thread: the serving loop is woken to stop."""
        self._should_exit = value
        if value and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def run(self, sockets: list[socket.socket] | None = None, on_listening=None) -> int:
        """Serve on a loop of uringio's own (``config.backend``); returns
        the exit status."""
        return aio_run(self.serve(sockets, on_listening), backend=self.config.backend)

    async def serve(self, sockets: list[socket.socket] | None = None, on_listening=None) -> int:
        """Serve on ``sockets`` (listening sockets, closed when it stops, as
        asyncio's servers close theirs), or on the one
        the config names, opened here and closed at the end. Returns the
        exit status: 0, or 3 when the app's lifespan startup failed (or the
        app could not be loaded: gunicorn's "worker failed to boot")."""
        config = self.config
        bind = None
        if sockets is None:
            bind = config.bind.resolved()
            sockets = [bind.open(reuse_port=config.reuse_port)]
        try:
            self.exit_status = await self._serve(config.load(), sockets, on_listening)
        finally:
            if bind is not None:
                bind.release(sockets[0])
        return self.exit_status

    async def _serve(self, app, sockets: list[socket.socket], on_listening) -> int:
        config = self.config
        self._loop = loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        if self._should_exit:
            stop.set()
        signals = []
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
                signals.append(signum)
        try:
            lifespan = Lifespan(app, config.lifespan)
            try:
                await lifespan.startup()
            except LifespanFailed as exc:
                log.error("the ASGI app's lifespan startup failed: %s", exc)
                return 3
            state = ServerState(app, state=lifespan.state, **config.settings)
            if config.metrics_board is not None:
                state.metrics = WorkerMetrics(config.metrics_board, loop,
                                              lambda: len(state.connections))
            servers: list[asyncio.AbstractServer] = []
            retire = functools.partial(self._retire, state, stop, servers)
            if config.limit_max_requests is not None:
                state.requests_left = config.limit_max_requests + random.randint(
                    0, config.limit_max_requests_jitter)
                state.retire = functools.partial(
                    retire, "it has started its maximum of requests (limit_max_requests)")
            state.start_sweeping(loop)
            if config.ssl is not None:
                context = config.ssl

                def factory() -> asyncio.BaseProtocol:
                    # (a handshake not done within the head's timeout: closed)
                    return TLSLayer(context, HttpProtocol(state), state.header_timeout)
            else:
                def factory() -> asyncio.BaseProtocol:
                    return HttpProtocol(state)
            for sock in sockets:
                servers.append(await loop.create_server(factory, sock=sock,
                                                        backlog=config.bind.backlog))
            if config.metrics_board is not None and self.serves_metrics:
                board = config.metrics_board
                servers.append(await loop.create_server(
                    lambda: MetricsProtocol(board), config.metrics_host, config.metrics_port))
            if signals:
                loop.add_signal_handler(signal.SIGHUP, retire, "SIGHUP: its replacement serves")
                signals.append(signal.SIGHUP)
            self.started = True
            if on_listening is not None:
                on_listening(Listening(address_of(sockets[0]),
                                       getattr(loop, "backend", "asyncio")))
            await stop.wait()
            self.started = False
            state.stopping = True
            for server in servers:
                server.close()   # no new connections
            await self._drain(state)
            if state.metrics is not None:
                state.metrics.stop()
            await lifespan.shutdown()
            return 0
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)

    @staticmethod
    def _retire(state: ServerState, stop: asyncio.Event, servers: list, why: str) -> None:
        """Stop accepting now, answer what this worker has, then exit:
        another worker (a supervisor's, gunicorn's) serves meanwhile."""
        if state.stopping:
            return
        log.info("this worker retires (%s): it answers what it has, then exits", why)
        # No more accepting from here, before the answer of the request that
        # got here goes out: a client's next connection waits in the
        # listener's backlog for the other workers, not for this one.
        state.stopping = state.retiring = True
        for server in servers:
            server.close()
        worker_retiring()   # (under a supervisor: the replacement starts now)
        stop.set()

    async def _drain(self, state: ServerState) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_graceful_shutdown
        for conn in list(state.connections):
            conn.shutdown(state.retiring)
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=self.config.timeout_graceful_shutdown)
        # A connection closes once its last response is sent (or, for a
        # WebSocket, once the peer answers the close): until then it still
        # holds bytes an abort would drop.
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for conn in list(state.connections):
            if isinstance(conn, HttpProtocol) and conn.cycle is None:
                conn.close()   # idle (a retiring worker's keep-alive): closed, not reset
            elif conn.transport is not None:
                conn.transport.abort()   # past the drain: cut short, and said so
        for task in list(state.tasks):
            task.cancel()
        state.stop_sweeping()


def run(app, host: str = "127.0.0.1", port: int = 8000, *, on_listening=None,
        **options: Any) -> int:
    """Serve ``app`` (an ASGI app, or "MODULE:APP") until SIGINT or SIGTERM,
    as uvicorn's ``run`` does; ``options`` are ``Config``'s. Returns the
    exit status."""
    config = Config(app, host, port, **options)
    if config.workers == 1 and not config.reload_dirs:
        return Server(config).run(on_listening=on_listening)
    if not config.reload_dirs:
        # Import (and make) the app once, in the supervisor, before the
        # workers are forked: an app that cannot load fails once, in one
        # line. (With reload, each worker imports the app as it is then.)
        config.app, config.factory = config.load(), False

    def serve_worker(listener, worker_listening) -> None:
        status = Server(config, serves_metrics=False).run([listener], worker_listening)
        if status:
            raise SystemExit(status)

    endpoint = None
    if config.metrics_board is not None and config.metrics_port is not None:
        endpoint = Endpoint(listen(config.metrics_host, config.metrics_port),
                            config.metrics_board)
    try:
        return Supervisor(serve_worker, config.workers, config.bind.resolved(),
                          config.timeout_graceful_shutdown,
                          max_worker_rss=config.max_worker_rss,
                          reload_dirs=config.reload_dirs,
                          wait=endpoint.serve_for if endpoint else None).run(on_listening)
    finally:
        if endpoint is not None:
            endpoint.close()


def serve_asgi(app, host: str = "127.0.0.1", port: int = 8000, *, backend: str = "auto",
               workers: int = 1, on_listening=None, drain_timeout: float = 5.0,
               reuse_port: bool = False, **options: Any) -> int:
    """Serve ``app`` until SIGINT or SIGTERM; returns the exit status.
    ``run`` with ``drain_timeout`` as ``timeout_graceful_shutdown`` (the
    name this function has had)."""
    return run(app, host, port, backend=backend, workers=workers, on_listening=on_listening,
               timeout_graceful_shutdown=drain_timeout, reuse_port=reuse_port, **options)
