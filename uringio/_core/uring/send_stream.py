"""The io_uring send stream: ``loop.open_send_stream(fd)`` on the
ProactorLoop (``epoll/send_stream.py`` is the readiness twin).

The bytes are copied into C memory at ``write`` and the rest is the C part
of the loop turn (``_build/_core/uring_helpers.c``): one SEND in flight per
socket, what is written meanwhile coalesced into the next, short sends
continued. Python hears only of a failure or of a level it asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..loop import BaseSendStream, drop
from .ring import Writer

if TYPE_CHECKING:
    from .loop import ProactorLoop


class UringSendStream(BaseSendStream):
    """Ordered, buffered writes to one socket, the way a transport needs them.

    The bytes are copied into C memory at ``write`` and the rest happens in
    the C part of the loop turn: one send in flight per socket, writes made
    meanwhile coalesced into the next send, short sends continued. Python is
    only told when a send fails or when a level it asked for is reached.
    """

    __slots__ = ("_loop", "_wid", "write_bytes", "handler", "_closed", "fd", "_sends", "_sent")

    write_bytes: Writer   # the C writer: write_bytes(data) -> int, and release()

    def __init__(self, loop: ProactorLoop, fd: int, wid: int, handler) -> None:
        self._loop = loop
        self._wid = wid
        self.fd = fd
        self.handler = handler
        self._closed = False
        # write_bytes(data) for bytes: the hot path, one C call.
        self.write_bytes = loop._ring.writer(wid)

    @property
    def buffered(self) -> int:
        if self._closed:   # the writer may serve another stream now
            return 0
        return max(self._loop._ring.writer_buffered(self._wid), 0)

    @property
    def sends(self) -> int:
        return self._sends if self._closed else self._loop._ring.writer_sends(self._wid)

    @property
    def sent(self) -> int:
        return self._sent if self._closed else self._loop._ring.writer_sent(self._wid)

    def notify(self, level: int) -> bool:
        if self._closed:
            return True
        return bool(self._loop._ring.writer_notify(self._wid, level))

    def close(self) -> None:
        # A send still in flight keeps its buffer until its completion
        # (close_fd cancels it).
        if not self._closed:
            loop = self._loop
            self._sends = loop._ring.writer_sends(self._wid)
            self._sent = loop._ring.writer_sent(self._wid)
            self._closed = True
            self.write_bytes.release()   # a late write must not reach a reused wid
            self.handler = drop   # (and lets go of the stream's owner)
            loop._ring.writer_release(self._wid)
            loop._streams_by_wid[self._wid] = None
            if loop._send_streams.get(self.fd) is self:
                del loop._send_streams[self.fd]
