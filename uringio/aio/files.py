"""Files for asyncio code, on the engine's file operations
(``uringio._core.file_api``, whose docstring has the details):

    async with uringio.open_file("data.bin", "rb") as f:
        header = await f.pread(64, 0)
        async for line in f: ...

The same code runs on both backends, on uringio's event loop only:
another loop gets a clear RuntimeError.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

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
    stat_fd,
    write_bytes,
)
from .futures import resolve
from .loop import EventLoop


class _AsyncioHost:
    """The file API under asyncio: an operation is a future on the loop."""

    def running(self) -> bool:
        return asyncio._get_running_loop() is not None

    def call(self, method: str, *args: Any, **options: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, EventLoop):
            raise RuntimeError(
                f"uringio's file API needs uringio's event loop, not {loop!r} (use "
                "uringio.run(), or asyncio.run(..., loop_factory=uringio.new_event_loop))")
        fut = loop.create_future()
        getattr(loop._core, method)(*args, functools.partial(resolve, fut), **options)
        return fut

    def reads(self) -> Callable[[int, Any, int], Any]:
        # The running loop's reads as futures made in one C call, where its
        # core has them (uring); else a stand-in that always says "no".
        loop = asyncio.get_running_loop()
        file_reads = getattr(getattr(loop, "_core", None), "file_reads", None)
        return file_api.no_reads if file_reads is None else file_reads(loop).future

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(None, fn, *args)


file_api.HOSTS.append(_AsyncioHost())

__all__ = ["AsyncFile", "AsyncTextFile", "copy", "mkdir", "open_file", "read_bytes", "remove",
           "rename", "rmdir", "stat", "stat_fd", "write_bytes"]
