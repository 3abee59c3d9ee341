"""asyncio's write flow control, for the ASGI protocols: the transport's
``pause_writing``/``resume_writing``, and ``drain()`` for the app's
``send`` to wait on while the client is slow to read."""

from __future__ import annotations

import asyncio


class WriteFlow:
    """Mixed into a protocol that sets ``loop`` and calls ``init_flow()``."""

    loop: asyncio.AbstractEventLoop
    write_paused: bool
    drain_waiters: list[asyncio.Future]

    def init_flow(self) -> None:
        self.write_paused = False
        self.drain_waiters = []

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters.clear()

    # The connection is gone: nobody waits for room any more.
    release_drain = resume_writing

    async def drain(self) -> None:
        if self.write_paused:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter
