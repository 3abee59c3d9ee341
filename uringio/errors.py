"""Exceptions, and the one place a kernel result becomes an exception."""

from __future__ import annotations

import errno
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
    kernel's; the message names the address, the cause and the fix."""

    @classmethod
    def from_bind(cls, exc: OSError, host: str, port: int) -> ListenError:
        """The ListenError for ``exc``, raised by bind(2) or listen(2) on ``host:port``."""
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use; pick another --port, or 0 for a free one"
        elif exc.errno == errno.EACCES and 0 < port < 1024:
            why = "permission denied: binding ports below 1024 needs root or CAP_NET_BIND_SERVICE"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = (f"{host} is not an address of this machine; give --host one of its "
                   "addresses, 127.0.0.1, or 0.0.0.0 for all")
        else:
            # socket.gaierror (an unknown host name) carries an EAI_* code in
            # errno, which os.strerror would misread: its own text is right.
            why = exc.strerror or str(exc)
        return cls(exc.errno, f"cannot listen on {where}: {why}")
