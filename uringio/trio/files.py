"""Files for trio code on the engine's file operations -- trio's
``open_file``, ``Path`` methods and friends run each call in a worker
thread; these are operations of the run's loop (``uringio._core.file_api``,
the same objects asyncio code gets from ``uringio.aio.files``):

    async with await uringio.trio.open_file("data.bin", "rb") as f:
        header = await f.pread(64, 0)

On io_uring a read is one operation in the ring, many in flight from the
run's thread; on epoll they run on the engine's worker pool. Under
``uringio.trio.run`` only. A call in a cancelled scope raises
``Cancelled`` before it starts; one cancelled while its operation is in
flight waits for the operation's completion (the kernel owns the buffer
until then) and returns its result, as trio's rule wants for an
operation that had its effect: the next checkpoint raises ``Cancelled``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import trio
from trio import lowlevel

from .._core import file_api
from .._core.file_api import (
    AsyncFile,
    AsyncTextFile,
    copy,
    mkdir,
    open_file,
    read_bytes,
    remove,
    rename,
    rmdir,
    stat,
    write_bytes,
)
from .streams import _manager


class _TrioHost:
    """The file API under trio: an operation's completion reschedules the
    task that waits for it, through the run's IOManager."""

    def running(self) -> bool:
        return lowlevel.in_trio_task()

    async def call(self, method: str, *args: Any, **options: Any) -> Any:
        manager = _manager()
        await lowlevel.checkpoint_if_cancelled()   # (cancelled before it starts: not started)
        task = lowlevel.current_task()

        getattr(manager.loop, method)(*args, functools.partial(manager.wake, task), **options)
        # (not abandoned when cancelled: it holds the caller's buffer)
        return await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.FAILED)

    def reads(self) -> Callable[[int, Any, int], None]:
        return file_api.no_reads

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)


file_api.HOSTS.insert(0, _TrioHost())   # (first: a trio guest run's tasks see asyncio's loop)

__all__ = ["AsyncFile", "AsyncTextFile", "copy", "mkdir", "open_file", "read_bytes", "remove",
           "rename", "rmdir", "stat", "write_bytes"]
