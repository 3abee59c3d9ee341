"""The ``multi`` model: N worker processes, each with its own loop and its
own SO_REUSEPORT listener, under a supervisor.

The kernel spreads new connections over the workers' listeners. Where there
is only one socket to listen on (a Unix socket path, a socket handed in by
``--fd`` or systemd), the supervisor opens it before forking and every
worker accepts on it: the kernel wakes one of them per connection. Workers are
forked before any loop exists, and each opens its listener and its ring
after it starts: a ring is never shared across fork. The supervisor
restarts a worker that dies, and on SIGINT or SIGTERM passes SIGTERM on,
waits for the workers to drain, and returns with no process left behind.

A worker that fails before listening because of where it runs (io_uring
refused, the address refused) would fail the same way however often it is
restarted: it reports the error through its ready pipe, and the supervisor
raises that same error rather than restart it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable

from ..errors import ListenError, UringUnavailable
from ..net.listeners import Bind, address_of

log = logging.getLogger("uringio")

RESTART_POLL = 0.1        # how often the supervisor looks at its workers
START_TIMEOUT = 10.0      # a worker must be listening within this
PR_SET_PDEATHSIG = 1

# The set-up errors a worker reports to the supervisor by name (``_start``).
SETUP_ERRORS = {cls.__name__: cls for cls in (UringUnavailable, ListenError)}


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never listening, SO_REUSEPORT socket: it fixes the port
    (``port`` 0 picks one) without taking any connections.

    Raises ListenError when the address cannot be bound, as ``listen`` does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError.from_bind(exc, host, port) from exc
    return sock


class Supervisor:
    """Keeps ``workers`` processes running ``serve_worker(open_listener,
    on_listening)``, which must serve on the socket ``open_listener()``
    returns until SIGTERM and call ``on_listening(server)`` once it accepts
    connections."""

    def __init__(self, serve_worker: Callable, workers: int, bind: Bind,
                 drain_timeout: float = 5.0, share_listener: bool = False) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._serve_worker = serve_worker
        self._bind = bind
        # TCP: a port reserved (bound, never listening) for the workers'
        # own listeners; otherwise (or when asked: workers that come and
        # go) the one listening socket they share.
        self._shared = bind.shared or share_listener
        self._socket = bind.open() if self._shared else reserve_port(bind.host, bind.port)
        name = self._socket.getsockname()
        self.port = name[1] if isinstance(name, tuple) else 0   # (a Unix socket has none)
        self._drain_timeout = drain_timeout
        self._pids: list[int] = []
        self._stopping = False
        self.backend = "?"

    @property
    def address(self) -> tuple | str:
        return address_of(self._socket)

    def _open_listener(self):
        """A worker's listening socket: its own on the reserved port, or
        the shared one it inherited."""
        if self._shared:
            return self._socket
        return self._bind.open(reuse_port=True, port=self.port)

    @property
    def pids(self) -> list[int]:
        return list(self._pids)

    def _start(self) -> int:
        """Fork a worker and wait until it listens; returns its pid.

        Raises the worker's UringUnavailable or ListenError when it fails
        to set up, and RuntimeError when it fails otherwise (a bug: the
        worker logs the traceback) or does not listen within START_TIMEOUT.
        """
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:   # the worker
            os.close(ready_r)
            code = 1
            try:
                code = self._become_worker(ready_w)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        os.close(ready_w)
        try:
            ready, _, _ = select.select([ready_r], [], [], START_TIMEOUT)
            # One line, written at once and shorter than PIPE_BUF: one read has it all.
            line = os.read(ready_r, 4096).decode() if ready else ""
        finally:
            os.close(ready_r)
        if not line.startswith("ready"):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if line.startswith("failed"):
                _, name, err, message = line.rstrip("\n").split(" ", 3)
                raise SETUP_ERRORS[name](int(err), message)
            raise RuntimeError("a worker did not start listening")
        self.backend = line.split()[1]
        return pid

    def _become_worker(self, ready_w: int) -> int:
        """Serve until SIGTERM, writing one line to ``ready_w``: "ready
        BACKEND" once listening, or "failed NAME ERRNO MESSAGE" if set-up
        fails. Returns the exit status."""
        # If the supervisor is killed outright, the kernel sends us SIGTERM.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        if not self._shared:
            self._socket.close()   # the reservation: the worker listens on its own

        # ready_w stays open until the worker exits, so its number is never
        # reused by a socket that a late write would then corrupt.
        def on_listening(server) -> None:
            os.write(ready_w, f"ready {server.backend}\n".encode())

        try:
            self._serve_worker(self._open_listener, on_listening)
        except (UringUnavailable, ListenError) as exc:
            # Not a bug, and no traceback: the supervisor says it in one line.
            os.write(ready_w, f"failed {type(exc).__name__} {exc.errno} {exc.strerror}\n".encode())
            return 2
        return 0

    def run(self, on_listening=None) -> int:
        """Start the workers, keep them running until SIGINT/SIGTERM, stop them."""
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for _ in range(self.workers):
                # One by one, so a failing start still leaves the started in _pids to stop.
                self._pids.append(self._start())
            if on_listening is not None:
                on_listening(self)
            while not self._stopping:
                for slot, pid in enumerate(self._pids):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done and not self._stopping:
                        # Status 0: it stopped by itself (--limit-max-requests).
                        log.log(logging.INFO if status == 0 else logging.WARNING,
                                "worker %d exited (%s); restarting", pid, _describe(status))
                        self._pids[slot] = self._start()
                time.sleep(RESTART_POLL)
        finally:
            self._stop_all()
            self._bind.release(self._socket)
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        live = []
        for pid in self._pids:
            try:
                os.kill(pid, signal.SIGTERM)
                live.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self._drain_timeout + 2.0
        for pid in live:
            while True:
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    log.error("worker %d did not stop; killing it", pid)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
        self._pids = []


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.WEXITSTATUS(status)}"
