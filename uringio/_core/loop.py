"""What both loops share: callbacks, timers, the thread-safe wakeup and
the turn. The operations themselves, and what each promises, are in
``interface.py``; each backend implements them its own way, and
``backend.py`` chooses between them.

One turn: wait for IO (not at all when callbacks are ready, else at most
until the next timer), dispatch what completed, fire the due timers, run
the callbacks queued before this point.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

from ..errors import LoopClosedError

log = logging.getLogger("uringio")


def drop(result: object) -> None:
    """The handler of an operation, or a stream's report, that nobody waits
    for any more."""

class Timer:
    """A callback scheduled by ``call_later``; ``cancel()`` stops it.

    A cancelled timer stays in the heap until its time comes (taking it out
    is a search), but lets go of its callback and arguments at once: a
    protocol that armed a 10 s head timeout and was closed a millisecond
    later must not be kept for the other 9.999 s -- with thousands of
    connections a second, that is tens of MiB held for nothing, as a soak of
    serve http showed. When cancelled timers are most of the heap, the loop
    drops them (``_timer_cancelled``), as asyncio's loop does.

    Its fields are named as asyncio's ``TimerHandle``'s (``_when``,
    ``_cancelled``, ``_scheduled``), and the two order by ``_when`` against
    each other: a loop built on this one keeps its timers in the same heap
    (``BaseLoop.host``)."""

    __slots__ = ("_when", "callback", "args", "_cancelled", "_scheduled", "loop")

    def __init__(self, when: float, callback: Callable, args: tuple, loop: BaseLoop) -> None:
        self._when = when
        self.callback: Callable | None = callback
        self.args: tuple | None = args
        self._cancelled = False
        self._scheduled = True
        self.loop: BaseLoop | None = loop   # None once it fired or was cancelled

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.callback = self.args = None
            loop, self.loop = self.loop, None
            if loop is not None:
                loop._timer_cancelled()

    def __lt__(self, other) -> bool:
        return self._when < other._when

    def __gt__(self, other) -> bool:   # (a TimerHandle's __lt__ leaves the comparison to it)
        return self._when > other._when


class BaseSendStream:
    """What both backends' send streams share (``loop.open_send_stream``):
    ``write_bytes(data)``, for bytes, is each backend's own hot path."""

    __slots__ = ()

    # A method (epoll) or, on io_uring, a C writer held in a slot.
    write_bytes: Callable[[bytes], int]

    def write(self, data) -> int:
        if data.__class__ is not bytes:
            data = bytes(data)   # the caller may change it after we return
        return self.write_bytes(data)


class BaseLoop:
    """Callbacks, timers and the run loop. A backend adds ``_poll(timeout)``,
    which waits at most ``timeout`` seconds (None: no limit) and dispatches
    completions, and the operations of ``interface.Loop``."""

    backend = "base"

    def __init__(self) -> None:
        # (callback, args) tuples, and a host's handles (host()).
        self._ready: deque[Any] = deque()
        self._timers: list[Any] = []   # a heap of Timers, and a host's timer handles
        self._cancelled_timers = 0     # in _timers, not yet dropped
        self._resolution = 0.0         # a timer this close to due fires now
        self._run_ready: Callable[[int], None] = self._run_callbacks
        self._stopping = False
        self._running = False
        self._closed = False
        # The thread that may use the loop: its creator until it runs
        # somewhere (see _enter); send streams refuse writes from others.
        self._thread_id = threading.get_ident()
        self._signals: dict[int, Any] = {}
        # Where a handler's or callback's exception goes: (what raised, the
        # exception). None: the "uringio" logger, with the traceback.
        self.on_error: Callable[[object, BaseException], None] | None = None
        # The wakeup: a pipe whose read end the backend keeps a read pending
        # on (uring) or watches (epoll). Other threads write to it
        # (call_soon_threadsafe), and so does Python's C-level signal
        # handler (signal.set_wakeup_fd; see wake_on_signals). A pipe, not
        # an eventfd: that handler writes one byte, which an eventfd refuses.
        self._wakeup_fd, self._wakeup_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._old_signal_wakeup: int | None = None   # while signals wake us: the fd before

    # -- callbacks and timers ------------------------------------------------

    def time(self) -> float:
        return monotonic()

    def call_soon(self, callback: Callable, *args: Any) -> None:
        self._ready.append((callback, args))

    def call_later(self, delay: float, callback: Callable, *args: Any) -> Timer:
        timer = Timer(self.time() + delay, callback, args, self)
        heapq.heappush(self._timers, timer)
        return timer

    def _timer_cancelled(self) -> None:
        # Dropping them costs a pass over the heap: worth it only once the
        # cancelled are many and most of it. (In place: a host shares the list.)
        self._cancelled_timers += 1
        timers = self._timers
        if self._cancelled_timers > 64 and 2 * self._cancelled_timers > len(timers):
            kept = []
            for timer in timers:
                if timer._cancelled:
                    timer._scheduled = False
                else:
                    kept.append(timer)
            timers[:] = kept
            heapq.heapify(timers)
            self._cancelled_timers = 0

    def host(self, ready: deque, timers: list, run_ready: Callable[[int], None],
             resolution: float) -> None:
        """Make this loop's turn the turn of a loop built on it (uringio.aio's
        asyncio loop), with one ready queue and one timer heap for both:
        ``ready`` and ``timers`` (the host's own, which replace this loop's
        before anything is queued) then hold the host's handles beside this
        loop's entries. The host's timer handles have ``_when``,
        ``_cancelled`` and ``_scheduled`` as Timers do; one that falls due
        goes into ``ready`` as it is, and ``run_ready(n)`` runs the first
        ``n`` entries of ``ready``, of either kind (a ``(callback, args)``
        tuple is this loop's). The host tells ``_timer_cancelled`` of each
        of its timer handles cancelled while scheduled."""
        assert not self._ready and not self._timers, "host() comes before anything is queued"
        self._ready, self._timers = ready, timers
        self._run_ready = run_ready
        self._resolution = resolution

    def call_soon_threadsafe(self, callback: Callable, *args: Any) -> None:
        self._ready.append((callback, args))  # deque.append is atomic
        try:
            os.write(self._wakeup_write, b"\0")
        except OSError:
            pass  # the pipe is full (a wakeup is pending anyway) or the loop closed

    def add_signal_handler(self, signum: int, callback: Callable, *args: Any) -> None:
        def on_signal(_signum, _frame):
            self.call_soon_threadsafe(callback, *args)
        old = signal.signal(signum, on_signal)
        self._signals.setdefault(signum, old)
        self.wake_on_signals(True)

    def remove_signal_handlers(self) -> None:
        for signum, old in self._signals.items():
            signal.signal(signum, old)
        self._signals.clear()
        self.wake_on_signals(False)

    def wake_on_signals(self, on: bool) -> None:
        # A Python-level handler runs only once the interpreter is back at
        # bytecode: a signal that lands between the turn's last bytecode
        # and the start of the wait would wait with it, until some IO or
        # timer ended the wait (a SIGTERM ignored for as long as a server
        # is idle). Python's C-level handler writing to our wakeup pipe
        # ends the wait whenever the signal comes.
        if on and self._old_signal_wakeup is None:
            self._old_signal_wakeup = signal.set_wakeup_fd(self._wakeup_write,
                                                           warn_on_full_buffer=False)
        elif not on and self._old_signal_wakeup is not None:
            signal.set_wakeup_fd(self._old_signal_wakeup)
            self._old_signal_wakeup = None

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        self._enter()
        self._stopping = False
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._running = False

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        # Real time, not self.time(): this bounds how long the caller waits,
        # also when a test has replaced the loop's clock.
        deadline = monotonic() + timeout
        self._enter()
        try:
            while not predicate():
                left = deadline - monotonic()
                if left <= 0:
                    return False
                self._run_once(min(left, 0.05))
            return True
        finally:
            self._running = False

    def run_once(self, max_wait: float | None) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed")
        if not self._running:   # embedded: the outer loop's thread is ours
            self._bind_thread(threading.get_ident())
        self._run_once(max_wait)

    def _enter(self) -> None:
        # Raises LoopClosedError, or RuntimeError when the loop is already
        # running or may not run in this thread.
        if self._closed:
            raise LoopClosedError("the loop is closed")
        if self._running:
            raise RuntimeError("the loop is already running")
        self._bind_thread(threading.get_ident())
        self._running = True

    def _bind_thread(self, thread_id: int) -> None:
        """The loop is about to run in ``thread_id``; a backend whose
        kernel object belongs to one thread refuses any other."""
        self._thread_id = thread_id

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def wakeup_fileno(self) -> int:
        return self._wakeup_fd

    def _run_once(self, max_wait: float | None = None) -> None:
        ready = self._ready
        timers = self._timers
        while timers and timers[0]._cancelled:   # not to wake for one
            heapq.heappop(timers)._scheduled = False
            self._cancelled_timers -= 1
        timeout: float | None
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = max(0.0, timers[0]._when - self.time())
            if max_wait is not None:
                timeout = min(timeout, max_wait)
        else:
            timeout = max_wait
        self._poll(timeout)

        if timers:
            end = self.time() + self._resolution
            while timers and timers[0]._when <= end:
                timer = heapq.heappop(timers)
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                elif timer.__class__ is Timer:
                    timer.loop = None   # fired: a cancel now changes nothing
                    ready.append((timer.callback, timer.args))
                else:
                    ready.append(timer)   # a host's (host()): its run_ready runs it
        # Only what was queued before this point: a callback that queues
        # another waits for the next turn, so IO is never starved.
        self._run_ready(len(ready))

    def _run_callbacks(self, n: int) -> None:
        # run_ready of a loop with no host: n (callback, args) entries.
        ready = self._ready
        for _ in range(n):
            callback, args = ready.popleft()
            try:
                callback(*args)
            except Exception as exc:
                self._report(callback, exc)

    def _handler_failed(self, handler: object) -> None:
        # In an except block: the exception being handled is the handler's.
        exc = sys.exc_info()[1]
        assert exc is not None
        self._report(handler, exc)

    def _report(self, what: object, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(what, exc)
        else:
            log.error("%r raised", what, exc_info=exc)

    def _poll(self, timeout: float | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed")

    def close(self) -> None:
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        self._closed = True
        self.remove_signal_handlers()
        self._ready.clear()
        self._timers.clear()
        self._cancelled_timers = 0
        os.close(self._wakeup_fd)
        os.close(self._wakeup_write)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
