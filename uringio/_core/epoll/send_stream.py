"""The epoll send stream: ``loop.open_send_stream(fd)`` on the ReactorLoop
(``uring/send_stream.py`` is the completion twin).

A write is tried at once, in the turn's flush; what the socket does not
take waits for EPOLLOUT, behind anything already queued.
"""

from __future__ import annotations

import errno
from threading import get_ident
from typing import TYPE_CHECKING

from ...errors import LoopClosedError
from ..loop import BaseSendStream, drop

if TYPE_CHECKING:
    from .loop import ReactorLoop, _FdState


class EpollSendStream(BaseSendStream):
    """Ordered, buffered writes to one socket: the epoll twin of
    UringSendStream. A write is tried at once; what the socket does
    not take waits for EPOLLOUT, behind anything already queued."""

    __slots__ = ("_loop", "_st", "fd", "handler", "notify_at", "failed", "_closed", "sends")

    def __init__(self, loop: ReactorLoop, st: _FdState, handler) -> None:
        self._loop = loop
        self._st = st
        self.fd = st.fd
        self.handler = handler
        self.notify_at = -1
        self.failed = 0
        self._closed = False
        self.sends = 0   # write/writev calls made for this stream (diagnostics)

    def write_bytes(self, data: bytes) -> int:
        # The bytes go out before the loop next waits, coalesced with whatever
        # else this stream was given meanwhile (_flush_streams).
        st = self._st
        if get_ident() != self._loop._thread_id:
            # The loop thread may be flushing this very queue.
            raise RuntimeError("a send stream was written from a thread other than its "
                               "loop's; use loop.call_soon_threadsafe()")
        if self.failed or self._closed:
            if self._loop._closed:
                raise LoopClosedError("the loop is closed")
            return -(self.failed or errno.EBADF)
        if not st.writes and not st.dirty:
            st.dirty = True
            self._loop._dirty.append(st)
        n = len(data)
        st.writes.append([data, None, n])
        st.buffered += n
        return st.buffered

    @property
    def buffered(self) -> int:
        return self._st.buffered

    @property
    def sent(self) -> int:
        return self._st.sent

    def notify(self, level: int) -> bool:
        if self._st.buffered <= level:
            self.notify_at = -1
            return True
        self.notify_at = level
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.handler = drop   # nothing reports to it now; and lets go of its owner
        st = self._st
        st.stream = None
        kept = [entry for entry in st.writes if entry[1] is not None]
        st.writes.clear()
        st.writes.extend(kept)
        st.buffered = sum(len(entry[0]) for entry in kept)
        if self._loop._fds.get(st.fd) is st:
            self._loop._update(st)
