"""What both loops share: the operation interface, timers, callbacks,
thread-safe wakeup, run/stop. Choosing the backend is ``backend.py``'s.

The operation interface is completion-based on both backends. A caller
*starts* an operation with a completion handler; the handler runs later, on
the loop thread, with the result or an `OSError` carrying the errno:

| operation | handler |
| --- | --- |
| `accept(sock, h)` | `h(fd)` per new connection, until `cancel_accept` or an error (`h(OSError)`: accepting has stopped) |
| `start_recv(fd, h, e=None)` | `h(bytes)` per chunk, then `h(b"")` at EOF or `h(OSError)`, which end the stream; with `e` given, EOF and errors go to `e` instead |
| `stop_recv(fd)` | stops a stream; nothing received is lost: the next `start_recv` on that fd delivers it |
| `recv(fd, n, h, timeout=None)` | one receive of at most `n` bytes: `h(bytes | OSError)` |
| `send(fd, data, h)` | a full send: `h(len(data))` once every byte is out, or `h(OSError)` |
| `close_fd(fd, h=None)` | cancels what is in flight on fd, then closes it: `h(0 | OSError)` |

`ProactorLoop` (backend "uring") submits these to io_uring and the kernel
does the IO. `ReactorLoop` (backend "epoll") waits for readiness and does
the non-blocking syscall itself. A handler never runs inside the call that
started its operation, on either backend.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import threading
from collections import deque
from time import monotonic
from typing import Any, Callable

from ..errors import LoopClosedError

log = logging.getLogger("uringio")

class Timer:
    """A callback scheduled by ``call_later``; ``cancel()`` stops it."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable, args: tuple) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return self.when < other.when


class BaseSendStream:
    """What both backends' send streams share (``loop.open_send_stream``):
    ``write_bytes(data)``, for bytes, is each backend's own hot path."""

    __slots__ = ()

    def write(self, data) -> int:
        """Queue ``data``; returns the bytes buffered and not yet sent
        (negative: -errno of the send that failed, already reported)."""
        if data.__class__ is not bytes:
            data = bytes(data)   # the caller may change it after we return
        return self.write_bytes(data)


class BaseLoop:
    """Callbacks, timers and the run loop. A backend adds ``_poll(timeout)``,
    which waits at most ``timeout`` seconds (None: no limit) and dispatches
    completions, and the operations listed in this module's docstring."""

    backend = "base"

    def __init__(self) -> None:
        self._ready: deque[tuple[Callable, tuple]] = deque()
        self._timers: list[Timer] = []
        self._stopping = False
        self._running = False
        self._closed = False
        # The thread that may use the loop: its creator until it runs
        # somewhere (see _enter); send streams refuse writes from others.
        self._thread_id = threading.get_ident()
        self._signals: dict[int, Any] = {}
        # eventfd: a thread-safe wakeup the backend keeps a read pending on.
        self._wakeup_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    # -- callbacks and timers ------------------------------------------------

    def time(self) -> float:
        return monotonic()

    def call_soon(self, callback: Callable, *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread in this or the next turn."""
        self._ready.append((callback, args))

    def call_later(self, delay: float, callback: Callable, *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a Timer."""
        timer = Timer(monotonic() + delay, callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def call_soon_threadsafe(self, callback: Callable, *args: Any) -> None:
        """``call_soon`` from any thread (or a signal handler): wakes the loop."""
        self._ready.append((callback, args))  # deque.append is atomic
        try:
            os.eventfd_write(self._wakeup_fd, 1)
        except (BlockingIOError, OSError):
            pass  # counter full (already pending) or loop closed

    def add_signal_handler(self, signum: int, callback: Callable, *args: Any) -> None:
        """Run ``callback(*args)`` on the loop when ``signum`` arrives.
        Must be called from the main thread."""
        def on_signal(_signum, _frame):
            self.call_soon_threadsafe(callback, *args)
        old = signal.signal(signum, on_signal)
        self._signals.setdefault(signum, old)

    def remove_signal_handlers(self) -> None:
        for signum, old in self._signals.items():
            signal.signal(signum, old)
        self._signals.clear()

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop()``. Handler exceptions are logged, not raised:
        one connection's failure never ends the loop."""
        self._enter()
        self._stopping = False
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._running = False

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run turns until ``predicate()`` is true or ``timeout`` seconds pass;
        returns the predicate's last value. For tests and shutdown."""
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
        """Make ``run()`` return after the current turn."""
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def _run_once(self, max_wait: float | None = None) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = max(0.0, timers[0].when - monotonic())
            if max_wait is not None:
                timeout = min(timeout, max_wait)
        else:
            timeout = max_wait
        self._poll(timeout)

        if timers:
            now = monotonic()
            while timers and timers[0].when <= now:
                timer = heapq.heappop(timers)
                if not timer.cancelled:
                    ready.append((timer.callback, timer.args))
        # Only what was queued before this point: a callback that queues
        # another waits for the next turn, so IO is never starved.
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            try:
                callback(*args)
            except Exception:
                log.exception("callback %r raised", callback)

    def _handler_failed(self, handler: object) -> None:
        log.exception("completion handler %r raised", handler)

    def _poll(self, timeout: float | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed")

    def close(self) -> None:
        """Release the loop's resources. Operations still in flight are
        cancelled first; their handlers are not called."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        self._closed = True
        self.remove_signal_handlers()
        self._ready.clear()
        self._timers.clear()
        os.close(self._wakeup_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
