"""Blocking work off the loop: the ``pool`` server model.

A protocol marks its ``data_received`` with ``@blocking`` when it does
blocking work (a database call, a slow computation). The method then runs
*off* the loop thread and *returns* the bytes to send back, instead of
writing them itself: worker threads never touch the ring or a connection.
Its result travels back through the loop's thread-safe wakeup (a pipe with
a read kept pending on the ring, or registered with epoll), and the
connection writes results in the order the data arrived.

Under the ``single`` model a ``@blocking`` method runs inline, on the loop
thread, and under ``threads`` on its connection's own thread: the same
protocol runs under every model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..net.blocking import blocking, is_blocking  # noqa: F401  (where users found them)

log = logging.getLogger("uringio")


class WorkerPool:
    """N worker threads whose results are delivered on the loop thread."""

    def __init__(self, loop, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"a worker pool needs at least one thread, not {threads}")
        self._loop = loop
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="uringio-worker")

    def submit(self, fn: Callable, arg, done: Callable, token) -> None:
        """Run ``fn(arg)`` in a worker; then ``done(token, result)`` on the
        loop thread, where result is the return value or the exception."""
        self._executor.submit(self._run, fn, arg, done, token)

    def _run(self, fn, arg, done, token) -> None:
        try:
            result = fn(arg)
        except BaseException as exc:   # delivered to the loop, not lost in the thread
            result = exc
        self._loop.call_soon_threadsafe(done, token, result)

    def shutdown(self) -> None:
        """Wait for running work; queued work is dropped."""
        self._executor.shutdown(wait=True, cancel_futures=True)
