"""A gunicorn worker class: gunicorn's arbiter (its process management,
reloads, ``--max-requests``) around uringio's ASGI server.

    gunicorn -k uringio.asgi.workers.UringioWorker -w 4 main:app

Each worker serves gunicorn's listening sockets on uringio's asyncio loop,
on the backend ``URINGIO_BACKEND`` names (``auto`` by default). gunicorn's
settings that have a counterpart are passed on: ``--keep-alive``,
``--graceful-timeout``, ``--max-requests`` (with its jitter),
``--forwarded-allow-ips``, ``--backlog``, and TLS (``--certfile``,
``--keyfile``, ``--ca-certs``, ``--cert-reqs``, ``--ciphers``). The worker tells the arbiter it
is alive once a second (and at least every ``--timeout``/2), stops
gracefully on SIGTERM, SIGINT and SIGQUIT, and exits with gunicorn's "worker
failed to boot" status when the app's lifespan startup fails, so that the
arbiter stops instead of restarting it forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ..aio import run as aio_run
from ..net.listeners import share
from ..net.tls import DEFAULT_CIPHERS
from .server import Config, Server

HEARTBEAT_MAX = 1.0   # seconds between two notes to the arbiter, at most


class UringioWorker(Worker):
    """gunicorn's worker running uringio's ASGI server (``-k`` names it)."""

    def init_signals(self) -> None:
        # The server's loop handles SIGINT and SIGTERM (and, below, SIGQUIT);
        # gunicorn's own handlers would only set a flag nothing reads.
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)   # reopen the log files
        signal.siginterrupt(signal.SIGUSR1, False)

    def run(self) -> None:
        for name in ("uringio", "uringio.asgi"):
            logger = logging.getLogger(name)
            logger.handlers = self.log.error_log.handlers
            logger.setLevel(self.log.error_log.level)
            logger.propagate = False
        cfg = self.cfg
        tls = {}
        if cfg.is_ssl:   # gunicorn's --certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers
            options = cfg.ssl_options
            tls = dict(ssl_certfile=options["certfile"], ssl_keyfile=options["keyfile"],
                       ssl_ca_certs=options["ca_certs"], ssl_cert_reqs=options["cert_reqs"],
                       ssl_ciphers=options["ciphers"] or DEFAULT_CIPHERS)
        config = Config(
            self.wsgi, backend=os.environ.get("URINGIO_BACKEND", "auto"),
            backlog=cfg.backlog, timeout_graceful_shutdown=max(cfg.graceful_timeout, 0.001),
            keep_alive=max(cfg.keepalive, 0.001),
            limit_max_requests=self.max_requests if cfg.max_requests > 0 else None,
            forwarded_allow_ips=tuple(cfg.forwarded_allow_ips), **tls)
        server = Server(config)
        status = aio_run(self._serve(server), backend=config.backend)
        if status:
            sys.exit(Arbiter.WORKER_BOOT_ERROR if status == 3 else status)

    async def _serve(self, server: Server) -> int:
        loop = asyncio.get_running_loop()
        # gunicorn's quick shutdown; served as the graceful one, as uvicorn's worker does.
        loop.add_signal_handler(signal.SIGQUIT, setattr, server, "should_exit", True)
        # gunicorn's workers all accept on its sockets.
        serving = asyncio.ensure_future(server.serve([share(s.sock) for s in self.sockets]))
        interval = min(HEARTBEAT_MAX, self.timeout / 2) if self.timeout else HEARTBEAT_MAX
        while not serving.done():
            self.notify()
            if os.getppid() != self.ppid:   # the arbiter is gone: so are we
                self.log.info("parent changed, shutting down: %s", self)
                server.should_exit = True
            await asyncio.wait([serving], timeout=interval)
        return serving.result()
