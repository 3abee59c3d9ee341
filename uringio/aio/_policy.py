"""``EventLoopPolicy``: asyncio's default policy, making uringio loops.

This module is imported only when the policy is asked for
(``uringio.aio.EventLoopPolicy``, ``uringio.EventLoopPolicy``) or
``uringio.install()`` is called: defining the class reads
``asyncio.DefaultEventLoopPolicy``, and asyncio's policy API is deprecated
from Python 3.14 (a DeprecationWarning on each use) and removed in 3.16. So
``import uringio``, ``uringio.run`` and ``uringio.new_event_loop`` never go
near it, as uvloop does not.
"""

from __future__ import annotations

import asyncio

from .loop import EventLoop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making uringio loops on ``backend``.

    Deprecated with asyncio's policies (Python 3.14, removed in 3.16):
    prefer ``uringio.run(main())`` or
    ``asyncio.run(main(), loop_factory=uringio.new_event_loop)``."""

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        self._backend = backend

    def new_event_loop(self) -> EventLoop:
        return EventLoop(self._backend)
