"""Connection and Protocol: the layer applications write against.

The vocabulary is asyncio's (``connection_made``, ``data_received``,
``eof_received``, ``connection_lost``; ``write``, ``close``, ``abort``,
``pause_writing``/``resume_writing``), so habits carry over. Underneath, a
Connection holds one receive stream and one send stream on its socket:
one recv and at most one send in flight, writes made meanwhile coalesced
into the next send, all of it kept out of Python on the io_uring backend.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from typing import Callable

from .pool import is_blocking

log = logging.getLogger("uringio")

# Write-buffer limits, as in asyncio: pause_writing above HIGH, resume at LOW.
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = 16 * 1024
# A file goes to the loop's sendfile in slices this large: each one sent is
# a sign of life for the idle timeout (a slow download is not an idle peer).
FILE_SLICE = 256 * 1024


class Protocol:
    """Base class for connection callbacks; override what you need."""

    def connection_made(self, conn: "Connection") -> None:
        """The connection is up; ``conn`` is its Connection."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived. ``data`` is the caller's to keep."""

    def eof_received(self) -> bool | None:
        """The peer closed its sending side. Return a true value to keep the
        connection open for writing; otherwise it is closed after the queued
        writes are sent."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is closed: ``exc`` is None for a clean close, else
        the error that ended it."""

    def pause_writing(self) -> None:
        """More than the high-water mark is buffered: stop writing for now."""

    def resume_writing(self) -> None:
        """The buffer drained to the low-water mark: writing may go on."""


class Connection:
    """One TCP connection on a loop. Not thread-safe: use it from the loop."""

    __slots__ = ("_loop", "fd", "_protocol", "_stream", "_write", "_closing",
                 "_closed", "_exc", "_on_closed", "_high", "_low", "_paused_writing",
                 "_paused_reading", "_on_data", "_deliver", "_idle_timeout", "_idle_timer",
                 "_last_data", "_progress", "_file_slices", "_pool", "_work", "_eof_pending",
                 "_queue", "__weakref__")

    def __init__(self, loop, fd: int, protocol: Protocol,
                 on_closed: Callable[["Connection"], None] | None = None,
                 idle_timeout: float | None = None, pool=None) -> None:
        self._loop = loop
        self.fd = fd
        self._protocol = protocol
        self._stream = loop.open_send_stream(fd, self._on_send_event)
        # Bound once: write() is the per-message hot path.
        self._write = self._stream.write_bytes
        self._closing = False
        self._closed = False
        self._exc: Exception | None = None
        self._on_closed = on_closed
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_LOW_WATER
        self._paused_writing = False
        self._eof_pending = False
        # While a file is being sent: it, and what was written or sent after
        # it, in order (bytes, or (file, offset, count)).
        self._queue: deque = deque()
        self._file_slices = 0         # file slices sent so far
        self._progress = 0            # bytes and slices sent, at the last idle check
        self._paused_reading = False
        self._idle_timeout = idle_timeout
        self._idle_timer = None
        self._last_data = 0.0
        self._pool = pool
        self._work: deque = deque()   # [done, result] per offloaded chunk, in arrival order
        # Data goes straight to the protocol unless its data_received is
        # @blocking (run in the pool, or inline and its result written) or
        # idle time is watched.
        if not is_blocking(protocol.data_received):
            self._deliver = protocol.data_received
        elif pool is not None:
            self._deliver = self._offload
        else:
            self._deliver = self._run_blocking
        self._on_data = self._deliver if idle_timeout is None else self._on_data_timed

    def start(self) -> None:
        """Tell the protocol, then start receiving."""
        self._protocol.connection_made(self)
        if self._closing:
            return
        self._loop.start_recv(self.fd, self._on_data, self._on_recv_end)
        if self._idle_timeout is not None:
            self._last_data = self._loop.time()
            self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)

    def pause_reading(self) -> None:
        """Stop delivering data_received() until resume_reading(); the peer is
        slowed by TCP flow control. Nothing already received is lost."""
        if not self._closing and not self._paused_reading:
            self._paused_reading = True
            self._loop.stop_recv(self.fd)

    def resume_reading(self) -> None:
        if self._paused_reading and not self._closed:
            self._paused_reading = False
            self._loop.start_recv(self.fd, self._on_data, self._on_recv_end)

    def _on_data_timed(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        self._deliver(data)

    # -- blocking work (pool.py) ---------------------------------------------

    def _run_blocking(self, data: bytes) -> None:
        result = self._protocol.data_received(data)
        if result:
            self.write(result)

    def _offload(self, data: bytes) -> None:
        entry = [False, None]
        self._work.append(entry)
        self._pool.submit(self._protocol.data_received, data, self._work_done, entry)

    def _work_done(self, entry: list, result) -> None:
        # On the loop thread. Results go out in arrival order: one that
        # finished early waits for those before it.
        entry[0], entry[1] = True, result
        work = self._work
        while work and work[0][0]:
            result = work.popleft()[1]
            if self._closed:
                continue
            if isinstance(result, BaseException):
                log.error("blocking data_received failed: %r", result)
                self._fail(result if isinstance(result, Exception) else RuntimeError(repr(result)))
            elif result:
                self._write(result if result.__class__ is bytes else bytes(result))
        if not work:
            self._finish_if_drained()

    def _check_idle(self) -> None:
        # A timer per connection, re-armed for the time left, rather than one
        # reset per message: watching idle time costs one clock read per chunk.
        # Our bytes going out count too, seen at each check: a peer that is
        # still taking a long response is not idle, one that stopped
        # reading it is.
        if self._closed:
            return
        now = self._loop.time()
        progress = self._stream.sent + self._file_slices
        if progress != self._progress or self._paused_reading:
            # (we stopped reading: that is not the peer idling either)
            self._progress = progress
            self._last_data = now
        left = self._last_data + self._idle_timeout - now
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._check_idle)
        else:
            self._fail(TimeoutError(f"idle for {self._idle_timeout:g} s: nothing received or sent"))

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def loop(self):
        """The loop this connection runs on (for ``call_later``, ``time``)."""
        return self._loop

    @property
    def peername(self):
        """The peer's (host, port)."""
        sock = socket.socket(fileno=self.fd)
        try:
            return sock.getpeername()
        finally:
            sock.detach()

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self._stream.buffered if not self._closed else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """pause_writing() above ``high`` buffered bytes, resume_writing() at ``low``."""
        high = DEFAULT_HIGH_WATER if high is None else high
        low = high // 4 if low is None else low
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got high={high} low={low}")
        self._high, self._low = high, low

    # -- receiving -----------------------------------------------------------

    def _on_recv_end(self, end) -> None:
        # The receive stream ended: b"" at EOF, or an OSError.
        if end.__class__ is not bytes:
            self._fail(end)
        elif not self._closed and not self._protocol.eof_received():
            self.close()

    # -- sending -------------------------------------------------------------

    def write(self, data) -> None:
        """Queue ``data`` for sending, in order. Raises RuntimeError after
        close(); after the connection is lost, writes are dropped."""
        if self._closing:
            if self._closed:
                return
            raise RuntimeError("write() after close()")
        if data.__class__ is not bytes:
            data = bytes(data)   # the caller may change it after we return
        if self._queue:   # a file goes out first; these bytes wait their turn
            self._queue.append(data)
            return
        if self._write(data) > self._high and not self._paused_writing:
            self._pause_writing()

    def sendfile(self, file, offset: int = 0, count: int | None = None,
                 close: bool = False) -> None:
        """Send ``count`` bytes (default: to the end) of ``file`` (an open
        file, kept referenced until sent) from ``offset``, in order with the
        writes around it, without copying them through Python. With
        ``close``, the file is closed once sent or once the connection is."""
        if self._closing:
            raise RuntimeError("sendfile() after close()")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        self._queue.append((file, offset, count, close))
        if len(self._queue) == 1 and self._stream.notify(0):
            self._next_file()

    def _next_file(self) -> None:
        # What was written before the file is out: the file's turn, a slice
        # at a time.
        file, offset, count, _close = self._queue[0]
        self._loop.sendfile(self.fd, file.fileno(), offset, min(count, FILE_SLICE),
                            self._file_sent)

    def _file_sent(self, res) -> None:
        if res.__class__ is not int:
            self._fail(res)
            return
        if self._closed:
            return
        queue = self._queue
        self._file_slices += 1
        file, offset, count, close = queue[0]
        if res == min(count, FILE_SLICE) < count:   # a slice out, more to go
            queue[0] = (file, offset + res, count - res, close)
            self._next_file()
            return
        queue.popleft()
        if close:
            file.close()
        # Bytes queued behind the file go to the stream; a file behind them
        # waits until they are out.
        while queue and queue[0].__class__ is bytes:
            data = queue.popleft()
            self._write(data)
        if queue:
            if self._stream.notify(0):
                self._next_file()
        else:
            self._finish_if_drained()

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def _pause_writing(self) -> None:
        self._paused_writing = True
        self._stream.notify(self._low)
        self._protocol.pause_writing()

    def _on_send_event(self, res) -> None:
        # The send stream's report: an OSError (the stream is broken), or the
        # bytes still buffered once the level we asked for was reached.
        if res.__class__ is not int:
            self._fail(res)
            return
        if self._closed:
            return
        if self._paused_writing and res <= self._low:
            self._paused_writing = False
            self._protocol.resume_writing()
        if self._queue:
            if res == 0:
                self._next_file()   # what was written before the file is out
            return
        if self._eof_pending and (res == 0 or self._stream.notify(0)):
            self._shutdown_write()
        self._finish_if_drained()

    def write_eof(self) -> None:
        """Send FIN once the queued writes are out; receiving goes on (a
        server that refuses a request reads the rest before closing, so the
        peer sees the answer and not a reset)."""
        if self._closing or self._eof_pending:
            return
        self._eof_pending = True
        if self._stream.notify(0):
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        self._eof_pending = False
        sock = socket.socket(fileno=self.fd)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass   # already reset: the receive side will say so
        finally:
            sock.detach()

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Close once the queued writes are sent (and, under the pool model,
        once the blocking work already started has written its results)."""
        if self._closing:
            return
        self._closing = True
        self._finish_if_drained()

    def _finish_if_drained(self) -> None:
        # A close() waits for the blocking work already started, the files
        # queued and the bytes buffered; whichever of them ends last gets here.
        if (self._closing and not self._closed and not self._work and not self._queue
                and self._stream.notify(0)):
            self._finish()

    def abort(self) -> None:
        """Close now, dropping queued writes."""
        self._closing = True
        self._finish()

    def _fail(self, exc: Exception) -> None:
        if self._closed:
            return
        self._exc = exc
        self._closing = True
        self._finish()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for item in self._queue:
            if item.__class__ is tuple and item[3]:
                item[0].close()   # the loop's own sendfile holds its fd until cancelled
        self._queue.clear()
        self._stream.close()
        self._loop.close_fd(self.fd)
        try:
            self._protocol.connection_lost(self._exc)
        finally:
            if self._on_closed is not None:
                self._on_closed(self)
