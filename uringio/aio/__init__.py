"""asyncio on uringio: an event loop that is a drop-in for asyncio's own.

    uringio.run(main())                                  # like asyncio.run
    asyncio.run(main(), loop_factory=uringio.new_event_loop)   # Python 3.12+
    uringio.install()                                    # every new loop is uringio's

The same ``backend`` flag as everywhere else: ``"uring"``, ``"epoll"`` or
``"auto"``. See ``loop.py`` for what is uringio's and what is asyncio's.

``EventLoopPolicy`` (and ``install``, which sets one) is made only when
asked for: asyncio's policy API is deprecated from Python 3.14 and removed
in 3.16, so importing this module, ``run`` and ``new_event_loop`` do not
touch it (``_policy.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .loop import EventLoop

if TYPE_CHECKING:
    from ._policy import EventLoopPolicy as EventLoopPolicy

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


def __getattr__(name: str) -> Any:
    # PEP 562: ``EventLoopPolicy`` is defined on first use, not at import
    # (see the module's docstring). Once made it is a plain global here.
    if name == "EventLoopPolicy":
        from ._policy import EventLoopPolicy
        globals()[name] = EventLoopPolicy
        return EventLoopPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "EventLoopPolicy"})


def install(backend: str = "auto") -> None:
    """Make every loop asyncio creates from now on a uringio loop, by
    setting asyncio's event loop policy (deprecated from Python 3.14, with
    the policies: prefer ``run`` or ``loop_factory=new_event_loop``)."""
    from ._policy import EventLoopPolicy
    asyncio.set_event_loop_policy(EventLoopPolicy(backend))


def run(main: Coroutine[Any, Any, T], *, backend: str = "auto",
        debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a uringio loop: run the coroutine, cancel
    what is left, shut down async generators and the default executor,
    close the loop."""
    # A Runner with a loop factory, as ``asyncio.run(main, loop_factory=)``:
    # it neither asks asyncio's policy for a loop nor sets one on it.
    with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(backend)) as runner:
        return runner.run(main)


__all__ = ["EventLoop", "install", "new_event_loop", "new_event_loop_epoll", "new_event_loop_uring",
           "run"]
if sys.version_info < (3, 14):
    # Where the policies are deprecated, ``from uringio.aio import *`` does
    # not make one (and, from 3.16, cannot).
    __all__ += ["EventLoopPolicy"]
