"""The ``multi`` model: N worker processes, each with its own loop, under a
supervisor.

The supervisor opens the listening sockets and holds them; each worker
serves the one of its slot. On a TCP port each slot has its own listener,
all on the port with SO_REUSEPORT, and the kernel spreads new connections
over them; on a Unix socket path or a socket handed in (``--fd``,
systemd), which exist once, every slot has that one. Workers are forked
before any loop exists, and each sets up its ring after it starts: a ring
is never shared across fork.

A worker that goes is replaced on its slot's socket, whose backlog holds
the connections that arrive meanwhile, so none is refused or reset: one
that died, one that retired by itself (``limit_max_requests``), and on
SIGHUP every worker in turn, the new one started before the old one is
told to retire (SIGHUP to the worker: stop accepting, answer what it has,
exit), as also when a worker's memory passes ``max_worker_rss``. On
SIGINT or SIGTERM the supervisor passes SIGTERM on, waits for the workers
to drain, and returns with no process left behind.

A worker that fails before listening because of where it runs (io_uring
refused) would fail the same way however often it is restarted: it
reports the error through its ready pipe, and the supervisor raises that
same error rather than restart it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable

from ..errors import ListenError, UringUnavailable
from ..net.listeners import Bind, address_of, share
from .reload import Watcher

log = logging.getLogger("uringio")

RESTART_POLL = 0.1        # how often the supervisor looks at its workers
RSS_POLL = 1.0            # how often it reads their memory, given max_worker_rss
START_TIMEOUT = 10.0      # a worker must be listening within this
PR_SET_PDEATHSIG = 1

# The set-up errors a worker reports to the supervisor by name (``_start``).
SETUP_ERRORS = {cls.__name__: cls for cls in (UringUnavailable, ListenError)}


class Supervisor:
    """Keeps ``workers`` processes running ``serve_worker(listener,
    on_listening)``, which must serve on the listening socket ``listener``
    until SIGTERM (or retire on SIGHUP: stop accepting, answer, exit) and
    call ``on_listening(server)`` once it accepts connections.
    ``max_worker_rss``: a worker whose resident memory passes that many
    bytes is replaced. ``reload_dirs``: every worker is replaced when a
    Python file under them changes (``--reload``). ``wait(seconds)``: how
    the supervisor passes the time between two looks at its workers
    (time.sleep; a metrics endpoint's ``serve_for``)."""

    def __init__(self, serve_worker: Callable, workers: int, bind: Bind,
                 drain_timeout: float = 5.0, max_worker_rss: int | None = None,
                 reload_dirs: list[str] | None = None,
                 wait: Callable[[float], None] | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._serve_worker = serve_worker
        self._bind = bind
        self._drain_timeout = drain_timeout
        self._max_rss = max_worker_rss
        self._reload_dirs = reload_dirs
        self._wait = wait or time.sleep
        # One listener per slot, held here for the life of the supervisor.
        first = bind.open(reuse_port=True)
        self._listeners = [first]
        try:
            if not bind.shared:
                port = first.getsockname()[1]
                self._listeners += [bind.open(reuse_port=True, port=port)
                                    for _ in range(self.workers - 1)]
        except BaseException:
            self._close_listeners()
            raise
        if self.workers > len(self._listeners):
            # (every worker accepts on the one socket: see share)
            self._listeners += [share(first)] * (self.workers - len(self._listeners))
        name = first.getsockname()
        self.port = name[1] if isinstance(name, tuple) else 0   # (a Unix socket has none)
        self._slots: list[int] = []          # each slot's worker
        self._retiring: set[int] = set()     # replaced workers, answering what they have
        self._notes: dict[int, int] = {}     # each worker's pipe: "retiring" comes on it
        self._stopping = False
        self._roll = False
        self.backend = "?"

    @property
    def address(self) -> tuple | str:
        return address_of(self._listeners[0])

    @property
    def pids(self) -> list[int]:
        return list(self._slots)

    def _close_listeners(self) -> None:
        for sock in {id(sock): sock for sock in self._listeners}.values():
            self._bind.release(sock)

    def _start(self, slot: int) -> int:
        """Fork a worker on ``slot``'s listener and wait until it listens;
        returns its pid.

        Raises the worker's UringUnavailable or ListenError when it fails
        to set up, and RuntimeError when it fails otherwise (a bug: the
        worker logs the traceback) or does not listen within START_TIMEOUT.
        """
        ready_r, ready_w = os.pipe()
        pid = fork_between_log_lines()
        if pid == 0:   # the worker
            os.close(ready_r)
            code = 1
            try:
                code = self._become_worker(slot, ready_w)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        os.close(ready_w)
        ready, _, _ = select.select([ready_r], [], [], START_TIMEOUT)
        # One line, written at once and shorter than PIPE_BUF: one read has it all.
        line = os.read(ready_r, 4096).decode() if ready else ""
        if not line.startswith("ready"):
            os.close(ready_r)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if line.startswith("failed"):
                _, name, err, message = line.rstrip("\n").split(" ", 3)
                raise SETUP_ERRORS[name](int(err), message)
            raise RuntimeError("a worker did not start listening")
        self.backend = line.split()[1]
        # The pipe stays: the worker says on it when it retires by itself.
        os.set_blocking(ready_r, False)
        self._notes[pid] = ready_r
        return pid

    def _become_worker(self, slot: int, ready_w: int) -> int:
        """Serve until SIGTERM, writing one line to ``ready_w``: "ready
        BACKEND" once listening, or "failed NAME ERRNO MESSAGE" if set-up
        fails. Returns the exit status."""
        # If the supervisor is killed outright, the kernel sends us SIGTERM.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if self._reload_dirs:
            # Each worker imports the app afresh, and Python takes cached
            # bytecode for a source of the size and mtime (in whole seconds)
            # it was compiled from: a one-character edit within the second
            # of the save before would be served as the old code, had a
            # worker written the old code's bytecode.
            sys.dont_write_bytecode = True
        mine = self._listeners[slot]
        for sock in self._listeners:
            if sock is not mine:
                sock.close()   # the other slots' (this fd only: the supervisor keeps them)

        # ready_w stays open until the worker exits, so its number is never
        # reused by a socket that a late write would then corrupt; after
        # "ready" it carries "retiring" (worker_retiring).
        global _note_fd
        _note_fd = ready_w

        def on_listening(server) -> None:
            os.write(ready_w, f"ready {server.backend}\n".encode())

        try:
            self._serve_worker(mine, on_listening)
        except (UringUnavailable, ListenError) as exc:
            # Not a bug, and no traceback: the supervisor says it in one line.
            os.write(ready_w, f"failed {type(exc).__name__} {exc.errno} {exc.strerror}\n".encode())
            return 2
        return 0

    def run(self, on_listening=None) -> int:
        """Start the workers, keep them running until SIGINT/SIGTERM, stop them."""
        old = {sig: signal.signal(sig, self._on_signal)
               for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        watcher = None
        try:
            if self._reload_dirs:
                watcher = Watcher(self._reload_dirs)
            for slot in range(self.workers):
                # One by one, so a failing start still leaves the started in _slots to stop.
                self._slots.append(self._start(slot))
            if on_listening is not None:
                on_listening(self)
            next_rss_check = time.monotonic()
            while not self._stopping:
                self._reap()
                changed = watcher.take() if watcher is not None else []
                if changed:
                    log.info("changed: %s", ", ".join(changed))
                    self._roll = True
                if self._roll:
                    self._roll = False
                    log.info("replacing the %d workers, one at a time", self.workers)
                    for slot in range(self.workers):
                        if not self._stopping:
                            self._replace(slot)
                if self._max_rss is not None and time.monotonic() >= next_rss_check:
                    next_rss_check = time.monotonic() + RSS_POLL
                    for slot, pid in enumerate(self._slots):
                        rss = _rss(pid)
                        if rss > self._max_rss and not self._stopping:
                            log.info("worker %d uses %d MiB, more than its limit of %d MiB: "
                                     "replacing it", pid, rss >> 20, self._max_rss >> 20)
                            self._replace(slot)
                self._wait(RESTART_POLL)
        finally:
            if watcher is not None:
                watcher.stop()
            self._stop_all()
            self._close_listeners()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return 0

    def _reap(self) -> None:
        """Restart the workers that went, start the replacement of one that
        says it retires, and forget the retired ones that went."""
        for pid in list(self._retiring):
            if _exited(pid) is not None:
                self._retiring.discard(pid)
                self._forget(pid)
        for slot, pid in enumerate(self._slots):
            status = _exited(pid)
            if status is not None and not self._stopping:
                self._forget(pid)
                log.log(logging.INFO if status == 0 else logging.WARNING,
                        "worker %d exited (%s); restarting", pid, _describe(status))
                self._slots[slot] = self._start(slot)
            elif status is None and self._said_retiring(pid) and not self._stopping:
                # (limit_max_requests) Its replacement now, while it answers
                # what it has: its slot is never without a worker accepting.
                self._slots[slot] = self._start(slot)
                self._retiring.add(pid)

    def _said_retiring(self, pid: int) -> bool:
        try:
            return b"retiring" in os.read(self._notes[pid], 4096)
        except (BlockingIOError, KeyError):
            return False

    def _forget(self, pid: int) -> None:
        fd = self._notes.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def _replace(self, slot: int) -> None:
        """A new worker on ``slot``, listening before the old one is told to
        retire (SIGHUP): the slot's socket is never without a worker. One
        that does not start (the app, edited, fails to import: its
        traceback is logged) leaves the old one serving."""
        old = self._slots[slot]
        try:
            new = self._start(slot)
        except RuntimeError as exc:
            log.error("worker %d serves on: its replacement failed (%s)", old, exc)
            return
        self._slots[slot] = new
        try:
            os.kill(old, signal.SIGHUP)
            self._retiring.add(old)
        except ProcessLookupError:
            os.waitpid(old, os.WNOHANG)

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self._roll = True
        else:
            self._stopping = True

    def _stop_all(self) -> None:
        live = []
        for pid in [*self._slots, *self._retiring]:
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
        self._slots = []
        self._retiring = set()
        for fd in self._notes.values():
            os.close(fd)
        self._notes = {}


_note_fd: int | None = None   # in a worker: the pipe to its supervisor


def fork_between_log_lines() -> int:
    """``os.fork()``, made while no other thread is writing a log line.

    A fork copies the locks other threads hold as held. CPython renews
    logging's own locks in the child, but not the lock of the stream a
    handler was writing to (``sys.stderr``'s buffer): a child forked while
    another thread wrote a line -- ``--reload``'s watcher, whose watchfiles
    logs each change -- would stop for good at its own first line of log.
    (On io_uring such a worker still accepts connections and never answers
    them.) Holding every handler's lock across the fork waits out a line
    being written; the child gets the locks renewed by logging."""
    handlers = {id(h): h for h in _handlers()}.values()
    for handler in handlers:
        handler.acquire()
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:   # (in the child, logging made the locks anew)
            for handler in handlers:
                handler.release()
    return pid


def _handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *(logger for logger in
                                      logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers]


def worker_retiring() -> None:
    """Tell this worker's supervisor, if it has one, that the worker is
    retiring by itself (limit_max_requests): the supervisor starts its
    replacement at once, rather than when it has gone."""
    if _note_fd is not None:
        try:
            os.write(_note_fd, b"retiring\n")
        except OSError:
            pass


def _exited(pid: int) -> int | None:
    """``pid``'s wait status if it has exited (reaped now), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done else None


def _rss(pid: int) -> int:
    """``pid``'s resident memory in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.WEXITSTATUS(status)}"
