"""trio on uringio's engine: ``uringio.trio.run`` runs an unmodified trio
program (anyio's trio backend too) with trio's IO manager replaced by one
on a uringio loop (``manager.py``): on io_uring, every readiness wait is a
poll operation batched into the ring's one ``io_uring_enter`` per turn.

trio has no public hook for an IO manager; uringio puts its own in the
place trio's runner reads (``trio._core._run.TheIOManager``), as trio's
own tests do. That name is private to trio, so only the trio versions
listed in ``TRIO_VERSIONS`` -- the ones trio's test suite passed on with
it -- are accepted (docs/trio.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import files
from .files import open_file
from .manager import IOManager, IOStatistics, installed
from .path import Path
from .streams import (
    SocketListener,
    SocketStream,
    open_tcp_listeners,
    open_tcp_stream,
    open_unix_socket,
    serve_tcp,
)

__all__ = ["TRIO_VERSIONS", "IOManager", "IOStatistics", "Path", "SocketListener", "SocketStream",
           "UnsupportedTrio", "check_trio_version", "files", "open_file", "open_tcp_listeners",
           "open_tcp_stream", "open_unix_socket", "run", "serve_tcp", "start_guest_run"]

# trio's releases whose runner takes uringio's manager: each passed trio's
# own test suite with it (tests/test_trio_suite.py).
TRIO_VERSIONS = ("0.35",)


class UnsupportedTrio(RuntimeError):
    """The installed trio is not one uringio's IO manager was tested with."""


def check_trio_version(version: str | None = None) -> None:
    """Raise UnsupportedTrio unless ``version`` (the installed trio's by
    default) is a release in TRIO_VERSIONS."""
    version = trio.__version__ if version is None else version
    if ".".join(version.split(".")[:2]) not in TRIO_VERSIONS:
        raise UnsupportedTrio(f"uringio.trio runs on trio {', '.join(TRIO_VERSIONS)}, not trio "
                              f"{version} (the IO manager hook is private to trio)")


def run(async_fn: Callable[..., Awaitable[Any]], *args: Any, backend: str = "auto",
        **trio_run_kwargs: Any) -> Any:
    """``trio.run(async_fn, *args, **trio_run_kwargs)`` with its IO on
    uringio's ``backend`` (``uring``, ``epoll``, or ``auto``: io_uring
    where it works). Raises UnsupportedTrio for a trio release not in
    TRIO_VERSIONS, UringUnavailable for ``uring`` where io_uring cannot
    run."""
    check_trio_version()
    with installed(backend):
        return trio.run(async_fn, *args, **trio_run_kwargs)


def start_guest_run(async_fn: Callable[..., Awaitable[Any]], *args: Any, backend: str = "auto",
                    **guest_run_kwargs: Any) -> None:
    """``trio.lowlevel.start_guest_run`` with its IO on uringio's
    ``backend``: trio as a guest of another loop (asyncio's, a GUI's),
    its waits done in a thread of trio's while the host runs."""
    check_trio_version()
    with installed(backend):
        trio.lowlevel.start_guest_run(async_fn, *args, **guest_run_kwargs)
