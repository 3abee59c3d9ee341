"""``loop.sendfile`` on uringio's transports.

Native: the Connection's own zero-copy file path (splice through a pipe on
io_uring, sendfile(2) on epoll), kept in order with its writes. Fallback
(a file without a descriptor, or ``_sendfile_native`` refused): asyncio's
copy through Python, read in the executor, written under flow control.
asyncio's own fallback swaps in a protocol that only works on asyncio's
transport class; ``_FlowWaiter`` is the same idea for a Connection.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import stat

from ..net.connection import Connection
from .futures import resolve

# The fallback's read size, as asyncio's.
FALLBACK_BLOCK = 16384


async def sendfile_native(loop: asyncio.AbstractEventLoop, transp, file, offset: int,
                          count: int | None) -> int:
    """Send ``count`` bytes (default: to the end) of ``file`` from ``offset``.
    As asyncio's: writes raise RuntimeError meanwhile, the file's position
    ends after the bytes sent, even when the send fails part way, and a
    count past the end of the file stops at the end."""
    if not isinstance(transp, Connection):
        raise asyncio.SendfileNotAvailableError(f"not a uringio transport: {transp!r}")
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation) as exc:
        raise asyncio.SendfileNotAvailableError("not a regular file") from exc
    try:
        st = os.fstat(fileno)
    except OSError as exc:
        raise asyncio.SendfileNotAvailableError("not a regular file") from exc
    if not stat.S_ISREG(st.st_mode):
        raise asyncio.SendfileNotAvailableError("not a regular file")
    left = max(st.st_size - offset, 0)
    count = left if count is None else min(count, left)
    if not count:
        return 0
    fut = loop.create_future()
    transp.sendfile(file, offset, count, done=functools.partial(resolve, fut), exclusive=True)
    sent = 0
    try:
        sent = await fut
    except OSError as exc:
        sent = getattr(exc, "sent", 0)
        raise
    finally:
        if sent:
            file.seek(offset + sent)
    return sent


async def sendfile_fallback(loop: asyncio.AbstractEventLoop, transp: Connection, file,
                            offset: int, count: int | None) -> int:
    """asyncio's fallback, for a Connection: read a block in the executor,
    wait while the transport is above its high-water mark, write it."""
    if offset:
        file.seek(offset)
    block = min(count, FALLBACK_BLOCK) if count else FALLBACK_BLOCK
    buf = bytearray(block)
    total = 0
    flow = _FlowWaiter(loop, transp)
    try:
        while True:
            if count:
                block = min(count - total, block)
                if block <= 0:
                    return total
            view = memoryview(buf)[:block]
            read = await loop.run_in_executor(None, file.readinto, view)
            if not read:
                return total   # EOF
            await flow.drain()
            transp.write(view[:read])
            total += read
    finally:
        if total and hasattr(file, "seek"):
            file.seek(offset + total)
        flow.restore()


class _FlowWaiter(asyncio.Protocol):
    """Stands in for the transport's protocol while the fallback writes:
    reading is paused, ``pause_writing`` / ``resume_writing`` gate
    ``drain``, and the connection's loss still reaches the real protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transp: Connection) -> None:
        self._loop = loop
        self._transport = transp
        self._proto = transp.get_protocol()
        self._resume_reading = transp.is_reading()
        # The protocol was told to pause and is owed a resume; this one
        # starts unpaused (set_protocol) and is paused by its own writes.
        self._resume_writing = transp.is_writing_paused()
        self._writable: asyncio.Future | None = None
        transp.pause_reading()
        transp.set_protocol(self)

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._writable is not None:
            await self._writable

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set_result(None)
            self._writable = None

    def data_received(self, data: bytes) -> None:
        # The Connection delivers nothing while reading is paused.
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> bool | None:
        raise RuntimeError("Invalid state: reading should be paused")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(exc or ConnectionError("Connection is closed by peer"))
        self._proto.connection_lost(exc)

    def restore(self) -> None:
        self._transport.set_protocol(self._proto)
        if self._resume_reading:
            self._transport.resume_reading()
        if self._writable is not None:
            self._writable.cancel()   # nobody waits on it any more
        if self._resume_writing:
            # Unpaused again by set_protocol: the next write above the
            # high-water mark pauses it anew.
            self._proto.resume_writing()
