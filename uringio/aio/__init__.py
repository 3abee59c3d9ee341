"""asyncio on uringio: an event loop that is a drop-in for asyncio's own.

    uringio.run(main())                                  # like asyncio.run
    asyncio.run(main(), loop_factory=uringio.new_event_loop)   # Python 3.12+
    uringio.install()                                    # every new loop is uringio's

The same ``backend`` flag as everywhere else: ``"uring"``, ``"epoll"`` or
``"auto"``. See ``loop.py`` for what is uringio's and what is asyncio's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from .loop import EventLoop

T = TypeVar("T")


def new_event_loop(backend: str = "auto") -> EventLoop:
    """A new uringio event loop on ``backend``."""
    return EventLoop(backend)


def new_event_loop_uring() -> EventLoop:
    """``new_event_loop("uring")``, for tools that take a factory by name
    (``uvicorn --loop uringio.aio:new_event_loop_uring``)."""
    return EventLoop("uring")


def new_event_loop_epoll() -> EventLoop:
    """``new_event_loop("epoll")``, likewise."""
    return EventLoop("epoll")


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making uringio loops."""

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        self._backend = backend

    def new_event_loop(self) -> EventLoop:
        return new_event_loop(self._backend)


def install(backend: str = "auto") -> None:
    """Make every loop asyncio creates from now on a uringio loop."""
    asyncio.set_event_loop_policy(EventLoopPolicy(backend))


def run(main: Coroutine[Any, Any, T], *, backend: str = "auto",
        debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a uringio loop: run the coroutine, cancel
    what is left, shut down async generators and the default executor,
    close the loop."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(backend)) as runner:
            return runner.run(main)
    loop = new_event_loop(backend)   # Python 3.10: asyncio.run's steps, by hand
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


__all__ = ["EventLoop", "EventLoopPolicy", "install", "new_event_loop", "new_event_loop_epoll",
           "new_event_loop_uring", "run"]
