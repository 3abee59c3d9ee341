"""The ASGI ``lifespan`` protocol: the app's startup and shutdown, once per
worker process, around the time it serves requests.

In mode "auto" (uvicorn's default), an app that does not speak lifespan
(it raises on the scope, or returns at once) is served all the same, with
one log line saying so; in mode "on" that stops the worker before it
listens, as an app that reports ``lifespan.startup.failed`` does in every
mode; in mode "off" the app never sees a lifespan scope.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("uringio.asgi")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


class LifespanFailed(RuntimeError):
    """The app reported ``lifespan.startup.failed`` (or ``shutdown.failed``)."""


class Lifespan:
    """Runs ``app`` with a lifespan scope; ``state`` is what the app stores
    there, shared (shallow-copied) into every request's scope."""

    def __init__(self, app, mode: str = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self._startup_done: asyncio.Future | None = None
        self._shutdown_done: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.supported = True

    async def startup(self) -> None:
        """Raises LifespanFailed when the app says startup failed (or, in
        mode "on", does not speak lifespan)."""
        if self.mode == "off":
            self.supported = False
            return
        loop = asyncio.get_running_loop()
        self._startup_done = loop.create_future()
        self._shutdown_done = loop.create_future()
        self._task = loop.create_task(self._run())
        await self._events.put({"type": "lifespan.startup"})
        message = await self._startup_done
        if message is not None:
            raise LifespanFailed(message)

    async def shutdown(self) -> None:
        if self._task is None or self._task.done() or not self.supported:
            return
        await self._events.put({"type": "lifespan.shutdown"})
        message = await self._shutdown_done   # type: ignore[misc]
        if message is not None:
            log.error("ASGI lifespan shutdown failed: %s", message)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self._startup_done is not None and not self._startup_done.done():
                # An app without lifespan support raises on the scope.
                self.supported = False
                if self.mode == "on":
                    self._startup_done.set_result(f"the app raised {exc!r} on the lifespan "
                                                  "scope (--lifespan on requires it)")
                    return
                log.info("ASGI 'lifespan' unsupported by the app (%r); serving without it", exc)
                self._startup_done.set_result(None)
            else:
                log.error("ASGI lifespan task raised", exc_info=exc)
        finally:
            for done in (self._startup_done, self._shutdown_done):
                if done is not None and not done.done():
                    if done is self._startup_done:
                        self.supported = False
                        if self.mode == "on":
                            done.set_result("the app returned before lifespan startup "
                                            "completed (--lifespan on requires it)")
                            continue
                        log.info("ASGI 'lifespan' returned before startup; serving without it")
                    done.set_result(None)

    async def _receive(self) -> dict:
        return await self._events.get()

    async def _send(self, message: dict) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            assert self._startup_done is not None
            if not self._startup_done.done():
                self._startup_done.set_result(
                    None if kind.endswith("complete") else message.get("message", ""))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            assert self._shutdown_done is not None
            if not self._shutdown_done.done():
                self._shutdown_done.set_result(
                    None if kind.endswith("complete") else message.get("message", ""))
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
