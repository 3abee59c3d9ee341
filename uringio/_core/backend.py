"""Choosing the backend: the one place that knows both loops.

``auto`` tries io_uring and falls back to epoll, saying why in one log
line; ``uring`` fails with the cause and the fix instead.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from ..errors import UringUnavailable
from .interface import Loop

log = logging.getLogger("uringio")

BACKENDS = ("auto", "uring", "epoll")


def open_loop(backend: str = "auto", **options: Any) -> Loop:
    """The loop for ``backend``: "uring", "epoll", or "auto" (io_uring when it
    can be set up here, else epoll, saying why in one log line).

    Raises UringUnavailable for "uring" when io_uring cannot be used, and
    ValueError for an unknown backend name. Its return type is what holds
    both backends to the ``Loop`` interface: the type checker proves each
    one is a ``Loop`` here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'uring' or 'epoll'")
    if backend in ("auto", "uring"):
        from .uring.loop import ProactorLoop
        try:
            return ProactorLoop(**options)
        except UringUnavailable as exc:
            if backend == "uring":
                raise
            code = exc.errno
            log.warning("io_uring unavailable (%s: %s); using epoll",
                        code if code is None else errno.errorcode.get(code, code),
                        exc.strerror)
    from .epoll.loop import ReactorLoop
    return ReactorLoop(**{k: v for k, v in options.items() if k in ReactorLoop.OPTIONS})
