"""trio's IO manager on uringio's engine.

trio's runner makes its IO manager from the module-level name
``trio._core._run.TheIOManager`` (epoll's on Linux) and calls it by these
names: ``get_events(timeout)`` to wait, ``process_events(events)`` to wake
the tasks that waited, ``force_wakeup()`` from another thread, ``close()``
and ``statistics()``; the ``trio.lowlevel`` functions ``wait_readable``,
``wait_writable`` and ``notify_closing`` call the methods of the same names.
``IOManager`` is that object over a uringio loop (``open_loop``): a
readiness wait is the loop's one-shot ``watch`` -- on io_uring a poll
operation, submitted with everything else of the turn in its one
``io_uring_enter``, never an ``epoll_ctl``; on the epoll Reactor, epoll's
interest. The loop is the trio run's own: the completion-based streams of
``uringio.trio`` receive and send on it.

``installed(backend)`` puts it in trio's place for one ``trio.run``: trio
reads the name once, when the run sets up, and the name is restored as
soon as it has.

Guest mode (``trio.lowlevel.start_guest_run``) calls ``get_events`` from a
worker thread while the host runs the rest. An io_uring ring here belongs
to the thread that made it (IORING_SETUP_SINGLE_ISSUER), and its
completions are posted only when that thread asks (DEFER_TASKRUN), so the
worker does not wait on the ring: it polls the fds the run's tasks wait
for, and the loop's wakeup (``force_wakeup``), and ``process_events``
reaps the completions on the run's thread.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import outcome
import trio
from trio import lowlevel

from .._core.backend import open_loop

_READY = object()   # what a guest-mode wait hands process_events: reap there


@dataclass(frozen=True)
class IOStatistics:
    """``trio.lowlevel.current_statistics().io_statistics`` on uringio."""

    tasks_waiting_read: int
    tasks_waiting_write: int
    backend: str


class IOManager:
    """trio's IO manager over a uringio loop (the run's ``io_manager``)."""

    def __init__(self, backend: str = "auto") -> None:
        self.loop: Any = open_loop(backend)
        self._thread = threading.get_ident()
        # (fd, writable) -> the task waiting: one per direction, as trio says.
        self._waiting: dict[tuple[int, bool], lowlevel.Task] = {}
        # What the last wait made ready: (task, outcome), or None for a
        # force_wakeup (it must make get_events' answer true).
        self._events: list[tuple[lowlevel.Task, Any] | None] = []

    # -- the runner's calls -------------------------------------------------------

    def get_events(self, timeout: float) -> list:
        """Wait at most ``timeout`` seconds; what became ready (false only
        when the time ran out with nothing)."""
        if threading.get_ident() != self._thread:
            return self._wait_from_guest_thread(timeout)
        # (events made outside a turn -- a stream's, say -- are handled now)
        self.loop.run_once(0 if self._events else timeout)
        events, self._events = self._events, []
        return events

    def process_events(self, events: list) -> None:
        if events and events[0] is _READY:   # a guest-mode wait: reap here
            self.loop.run_once(0)
            events, self._events = self._events, []
        for event in events:
            if event is not None:
                lowlevel.reschedule(*event)

    def wake(self, task: lowlevel.Task, result: Any = None) -> None:
        """From a completion handler (the loop's turn): ``task`` goes on with
        ``result`` -- raised in it if it is an exception -- once trio
        processes this turn's events."""
        self._events.append((task, outcome.Error(result) if isinstance(result, BaseException)
                             else outcome.Value(result)))

    def force_wakeup(self) -> None:
        self.loop.call_soon_threadsafe(self._events.append, None)

    def close(self) -> None:
        self.loop.close()

    def statistics(self) -> IOStatistics:
        writing = sum(1 for _fd, writable in self._waiting if writable)
        return IOStatistics(tasks_waiting_read=len(self._waiting) - writing,
                            tasks_waiting_write=writing, backend=self.loop.backend)

    def _wait_from_guest_thread(self, timeout: float) -> list:
        # What the run waits for is fixed meanwhile: trio runs no task
        # until this wait returns (the host only calls force_wakeup).
        poller = select.poll()
        poller.register(self.loop.wakeup_fileno(), select.POLLIN)
        for fd, writable in list(self._waiting):
            poller.register(fd, select.POLLOUT if writable else select.POLLIN)
        return [_READY] if poller.poll(max(0.0, timeout) * 1000) else []

    # -- trio.lowlevel's calls ----------------------------------------------------

    async def wait_readable(self, fd: int | Any) -> None:
        await self._wait(fd, False)

    async def wait_writable(self, fd: int | Any) -> None:
        await self._wait(fd, True)

    async def _wait(self, fd: int | Any, writable: bool) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        key = (fd, writable)
        if key in self._waiting:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        task = lowlevel.current_task()
        self.loop.watch(fd, writable, lambda res: self._ready(key, task, res), once=True)
        self._waiting[key] = task

        def abort(_: Any) -> lowlevel.Abort:
            del self._waiting[key]
            # (an fd closed without notify_closing may refuse the epoll_ctl:
            # the wait is over all the same)
            with contextlib.suppress(OSError):
                self.loop.unwatch(fd, writable)
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)

    def _ready(self, key: tuple[int, bool], task: lowlevel.Task, res: int | OSError) -> None:
        # The watch's one report: readiness, or the error that ended it (a
        # bad fd: raised in the task, as trio's epoll manager does).
        if self._waiting.get(key) is not task:
            return   # aborted meanwhile
        del self._waiting[key]
        self.wake(task, res if isinstance(res, OSError) else None)

    def notify_closing(self, fd: int | Any) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        for key in ((fd, False), (fd, True)):
            task = self._waiting.pop(key, None)
            if task is not None:
                with contextlib.suppress(OSError):
                    self.loop.unwatch(fd, key[1])
                lowlevel.reschedule(task, outcome.Error(
                    trio.ClosedResourceError("another task closed this fd")))


_install_lock = threading.Lock()
_wanted = threading.local()   # .backend: the manager the next run of this thread gets; .every
_trios_own: Any = None         # trio's own manager class, once _make is in its place


def _make() -> Any:
    # In trio's place (``TheIOManager``): a run started by uringio.trio.run
    # gets an IOManager, any other run trio's own.
    backend = getattr(_wanted, "backend", None)
    if backend is None:
        return _trios_own()
    if not _wanted.every:
        _wanted.backend = None
    return IOManager(backend)


@contextlib.contextmanager
def installed(backend: str = "auto", every_run: bool = False) -> Iterator[None]:
    """Within the block, the next trio run this thread starts (``trio.run``
    or a guest run) gets an ``IOManager`` on ``backend`` (with
    ``every_run``, each run it starts in the block). The first use
    puts a chooser in trio's place for good; it gives every other run,
    in any thread, trio's own manager as before."""
    global _trios_own
    from trio._core import _run

    with _install_lock:
        if _run.TheIOManager is not _make:
            _trios_own = _run.TheIOManager
            _run.TheIOManager = _make   # type: ignore[misc,assignment]  # (trio's own place)
    _wanted.backend, _wanted.every = backend, every_run
    try:
        yield
    finally:
        _wanted.backend = None
