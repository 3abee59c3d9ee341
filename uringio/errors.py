"""Exceptions, and the one place a kernel result becomes an exception."""

from __future__ import annotations

import os
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


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


def with_sent(exc: E, sent: int) -> E:
    """``exc`` carrying ``sent``: how many bytes a sendfile had moved when
    it failed (``Loop.sendfile``'s documented ``exc.sent``)."""
    exc.sent = sent   # type: ignore[attr-defined]
    return exc


class ListenError(OSError):
    """A listening socket cannot be bound: the port is taken, the port needs
    privileges, or the address is not this machine's. ``errno`` is the
    kernel's; the message names the address, the cause and the fix
    (``uringio.net.listeners`` makes them)."""

