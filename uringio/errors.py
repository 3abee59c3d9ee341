"""Exceptions, and the one place a kernel result becomes an exception."""

from __future__ import annotations

import os


class UringUnavailable(OSError):
    """io_uring cannot be set up here; the message names the cause and the fix."""


class BusyResourceError(RuntimeError):
    """An operation was started while a conflicting one is still in flight."""


class InvariantError(RuntimeError):
    """The loop's bookkeeping broke (a CQE for no operation in flight): the
    loop stops rather than guess."""


class LoopClosedError(RuntimeError):
    """An operation was started on a loop that has been closed."""


def os_error(errno_: int) -> OSError:
    """The OSError for a positive errno; Python picks the subclass
    (ConnectionResetError, BrokenPipeError, ...) from the number."""
    return OSError(errno_, os.strerror(errno_))


def check_res(res: int) -> int:
    """Return ``res``, or raise the OSError a negative CQE result stands for."""
    if res < 0:
        raise os_error(-res)
    return res
