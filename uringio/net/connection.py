"""Connection and Protocol: the layer applications write against.

The vocabulary is asyncio's (``connection_made``, ``data_received``,
``eof_received``, ``connection_lost``; ``write``, ``close``, ``abort``,
``pause_writing``/``resume_writing``), so habits carry over. Underneath, a
Connection holds one receive stream and one send stream on its socket:
one recv and at most one send in flight, writes made meanwhile coalesced
into the next send, all of it kept out of Python on the io_uring backend.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import logging
import os
import socket
import struct
import sys
import termios
from asyncio.constants import _SendfileMode
from collections import deque
from collections.abc import Callable
from typing import cast

from .._core.loop import drop
from ..errors import with_sent
from .blocking import is_blocking

log = logging.getLogger("uringio")

# Write-buffer limits, as in asyncio: pause_writing above HIGH, resume at LOW.
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = 16 * 1024

# struct tcp_info (linux/tcp.h, Linux 4.1+): tcpi_bytes_acked and
# tcpi_bytes_received, two u64 at offset 120.
_TCP_INFO_LEN = 136
_ACKED_AND_RECEIVED = struct.Struct("=120xQQ")
# SO_LINGER on, with a zero timeout: close() sends RST and drops what the
# kernel still holds, instead of a FIN after it.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _sock(fd: int) -> socket.socket:
    """A socket object over ``fd`` for one socket-option call; detach() it
    after. Its family is not asked of the kernel (three system calls), so
    it must not be used for addresses."""
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)


def peer_progress(fd: int) -> int:
    """What the peer of TCP socket ``fd`` has done so far: bytes of ours it
    acknowledged plus bytes it sent us, from TCP_INFO.

    Discussion: the idle timeout measures this, not what our own buffers
    took. Bytes accepted into a socket's send buffer say nothing about the
    peer: TCP wakes a blocked writer only once a third of that buffer has
    drained, so with a multi-megabyte send buffer a steady reader looked
    idle, and a peer that never reads looked busy until the buffer filled.
    An acknowledgement is the peer's kernel taking our bytes, which it does
    only as fast as its application reads; bytes received count whether we
    read them or not (reading may be paused by backpressure).
    Raises OSError for a socket that is not TCP."""
    sock = _sock(fd)
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    finally:
        sock.detach()
    if len(info) < _TCP_INFO_LEN:
        raise OSError(f"TCP_INFO of {len(info)} bytes has no tcpi_bytes_acked (Linux < 4.1)")
    acked, received = _ACKED_AND_RECEIVED.unpack(info)
    return acked + received


def unacknowledged(fd: int) -> int:
    """Bytes the kernel holds for TCP socket ``fd`` that the peer has not
    acknowledged yet (SIOCOUTQ)."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.TIOCOUTQ, buf)   # SIOCOUTQ is TIOCOUTQ's number
    return int.from_bytes(buf, sys.byteorder, signed=True)


class _QueuedFile:
    """A file ``Connection.sendfile`` was given, waiting for its turn."""

    __slots__ = ("file", "offset", "count", "close", "done", "exclusive", "read", "sending")

    def __init__(self, file, offset: int, count: int, close: bool,
                 done: Callable[[object], object] | None, exclusive: bool,
                 read: bool) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self.close = close    # close the file once it is sent, or the connection is
        self.done = done      # done(count) once sent, done(exc) if the connection ends
        self.exclusive = exclusive   # write() refuses until it is sent
        self.read = read      # read and written into the stream, not spliced
        self.sending = False   # in the loop's hands: its end is the loop's to report

    def over(self, result: int | BaseException) -> None:
        """The file is sent (``result`` is the count) or never will be."""
        if self.close:
            self.file.close()
        if self.done is not None:
            self.done(result)


class Protocol:
    """Base class for connection callbacks; override what you need.

    It has no instance dict of its own: a subclass that declares
    ``__slots__`` costs only those (an idle connection should cost little);
    one that does not gets a dict, as usual."""

    __slots__ = ()

    def connection_made(self, conn: Connection) -> None:
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


class Connection(asyncio.Transport):
    """One TCP connection on a loop. Not thread-safe: use it from the loop.

    It is an ``asyncio.Transport`` too: the same object serves uringio's
    ``Protocol`` and asyncio's ``Protocol`` or ``BufferedProtocol`` (the
    asyncio event loop, ``uringio.aio``, makes one per socket). As asyncio
    does, it calls ``connection_lost`` soon after the connection ends, never
    inside the call that ended it.
    """

    # For asyncio's loop.sendfile() (sent by sendfile() below, no copy
    # through Python) and loop.start_tls().
    _sendfile_compatible = _SendfileMode.TRY_NATIVE
    # Between close() and the end, write() raises (uringio's own rule: a
    # write after close is a bug) or, as on asyncio's transports, is sent
    # before the FIN (asyncio's TLS protocol writes its last records then).
    _writes_after_close = False
    _start_tls_compatible = True

    __slots__ = ("_loop", "fd", "_protocol", "_stream", "_write", "_closing",
                 "_closed", "_exc", "_on_closed", "_high", "_low", "_paused_writing",
                 "_paused_reading", "_deliver", "_events", "_idle_timeout", "_idle_timer",
                 "_peer_seen", "_peer_at", "_pool", "_work", "_eof",
                 "_queue", "_sock", "__weakref__")

    def __init__(self, loop, fd: int, protocol: Protocol | asyncio.BaseProtocol,
                 on_closed: Callable[[Connection], None] | None = None,
                 idle_timeout: float | None = None, pool=None, *,
                 sock: socket.socket | None = None, extra: dict | None = None) -> None:
        self._loop = loop
        self.fd = fd
        # The socket object that owns fd, if the caller has one: detached
        # before fd is closed, so that it never closes a reused number.
        self._sock = sock
        self._extra = extra   # get_extra_info()'s, beside what it asks the kernel
        self._protocol = protocol
        # One bound method, made once, for both streams' events (_on_event).
        self._events = self._on_event
        self._stream = loop.open_send_stream(fd, self._events)
        # Bound once: write() is the per-message hot path.
        self._write = self._stream.write_bytes
        self._closing = False
        self._closed = False
        self._exc: Exception | None = None
        self._on_closed = on_closed
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_LOW_WATER
        self._paused_writing = False
        self._eof = 0   # write_eof(): 1 once asked for, 2 once the FIN is sent
        # While a file is being sent: it, and what was written or sent after
        # it, in order (bytes, or a _QueuedFile). None until
        # the first file, as _work until the first offloaded chunk: an idle
        # connection should cost little, and an empty deque is 600 bytes.
        self._queue: deque | None = None
        self._paused_reading = False
        self._idle_timeout = idle_timeout
        self._idle_timer = None
        self._peer_seen = 0           # peer_progress() when it last changed
        self._peer_at = 0.0           # and when we saw that
        self._pool = pool
        self._work: deque | None = None   # [done, result] per offloaded chunk, in order
        self._deliver = self._receiver(protocol)

    def _receiver(self, protocol) -> Callable[[bytes], object]:
        # Data goes straight to the protocol's data_received, unless that is
        # @blocking (run in the pool, or inline and its result written), or
        # the protocol is asyncio's BufferedProtocol (into its own buffer).
        if isinstance(protocol, asyncio.BufferedProtocol):
            return self._into_buffer
        if not is_blocking(protocol.data_received):
            return protocol.data_received
        return self._offload if self._pool is not None else self._run_blocking

    def start(self, reading: bool = True) -> None:
        """Tell the protocol, then start receiving (unless ``reading`` is
        false: then ``start_reading()`` does, later)."""
        if self._idle_timeout is not None:
            # Raises OSError for a socket that is not TCP, before anything started.
            self._peer_seen = peer_progress(self.fd)
            self._peer_at = self._loop.time()
        self._protocol.connection_made(self)
        if reading:
            self.start_reading()

    def start_reading(self) -> None:
        """Start receiving, once, after ``start(reading=False)`` (unless the
        protocol paused reading or closed the connection meanwhile)."""
        if self._closing or self._paused_reading:
            return
        self._loop.start_recv(self.fd, self._deliver, self._events)
        if self._idle_timeout is not None:
            self._idle_timer = self._loop.call_later(self._idle_timeout / 2, self._check_idle)

    def pause_reading(self) -> None:
        """Stop delivering data_received() until resume_reading(); the peer is
        slowed by TCP flow control. Nothing already received is lost."""
        if not self._closing and not self._paused_reading:
            self._paused_reading = True
            self._loop.stop_recv(self.fd)

    def resume_reading(self) -> None:
        if self._paused_reading and not self._closed:
            self._paused_reading = False
            self._loop.start_recv(self.fd, self._deliver, self._events)

    def is_reading(self) -> bool:
        return not self._paused_reading and not self._closing

    def _into_buffer(self, data: bytes) -> None:
        # asyncio's BufferedProtocol: the bytes go into the buffer it hands
        # out, in as many rounds as that takes.
        protocol = cast(asyncio.BufferedProtocol, self._protocol)
        view = memoryview(data)
        while view:
            buf = memoryview(protocol.get_buffer(len(view))).cast("B")
            n = min(len(buf), len(view))
            if not n:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]

    # -- blocking work (pool.py) ---------------------------------------------

    def _run_blocking(self, data: bytes) -> None:
        # A @blocking data_received returns the bytes to send back, or None.
        work: Callable[[bytes], bytes | None] = self.protocol.data_received
        result = work(data)
        if result:
            self.write(result)

    def _offload(self, data: bytes) -> None:
        entry = [False, None]
        if self._work is None:
            self._work = deque()
        self._work.append(entry)
        self._pool.submit(self.protocol.data_received, data, self._work_done, entry)

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
        # A timer per connection that looks at what the peer did
        # (peer_progress) every half idle timeout, rather than a reset per
        # message: watching costs nothing on the data path. The peer is
        # seen idle from at most half a period after its last act, so a
        # connection is closed between 1 and 1.5 idle timeouts after it,
        # paused reading or not.
        if self._closed:
            return
        assert self._idle_timeout is not None   # the timer runs only with one
        now = self._loop.time()
        seen = peer_progress(self.fd)
        if seen != self._peer_seen:
            self._peer_seen, self._peer_at = seen, now
        elif now - self._peer_at >= self._idle_timeout:
            log.debug("closing the connection from %s: its peer sent and acknowledged "
                      "nothing for %g s", self._peer_label(), self._idle_timeout)
            self._fail(TimeoutError(f"idle for {self._idle_timeout:g} s: "
                                    "the peer sent and acknowledged nothing"))
            return
        self._idle_timer = self._loop.call_later(self._idle_timeout / 2, self._check_idle)

    def _peer_label(self) -> str:
        try:
            host, port = self.peername[:2]
            return f"{host}:{port}"
        except OSError:
            return f"fd {self.fd}"

    @property
    def protocol(self) -> Protocol:
        return cast(Protocol, self._protocol)

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol) -> None:
        """Hand the connection to another protocol; what is received from
        now on goes to it (asyncio's ``Transport.set_protocol``). The new
        protocol starts unpaused: it hears ``resume_writing()`` only after
        it has heard ``pause_writing()`` (asyncio's own transports would
        send it the resume owed to the old one, which some protocols, such
        as asyncio's TLS one, assert against)."""
        self._protocol = protocol
        self._deliver = self._receiver(protocol)
        self._paused_writing = False
        if not self._paused_reading and not self._closing:
            # Restart the stream with the new handler: nothing is lost
            # across a stop and a start.
            self._loop.stop_recv(self.fd)
            self._loop.start_recv(self.fd, self._deliver, self._events)

    def get_extra_info(self, name: str, default=None):
        """asyncio's: ``socket``, ``sockname``, ``peername``, and what the
        connection was made with."""
        if self._extra is not None and name in self._extra:
            return self._extra[name]
        if name in ("peername", "sockname") and not self._closed:
            try:
                return self._address(peer=name == "peername")
            except OSError:
                return default
        return default

    def is_writing_paused(self) -> bool:
        """Whether the protocol has been told ``pause_writing()`` and not
        yet ``resume_writing()``."""
        return self._paused_writing

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def can_write_eof(self) -> bool:
        return True

    @property
    def loop(self):
        """The loop this connection runs on (for ``call_later``, ``time``)."""
        return self._loop

    @property
    def peername(self):
        """The peer's (host, port)."""
        return self._address(peer=True)

    def _address(self, peer: bool):
        # A socket object that asks the kernel for fd's family, so that the
        # address is read at its full size (an IPv6 one is longer).
        sock = socket.socket(fileno=self.fd)
        try:
            return sock.getpeername() if peer else sock.getsockname()
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

    def _on_event(self, event) -> None:
        # Everything but data, from both streams, through one bound method
        # (an idle connection should cost little): an OSError ends the
        # connection, whichever stream it broke; b"" is the receive stream's
        # EOF; an int is the send stream's report of the bytes still
        # buffered, once they fell to the level we asked for.
        cls = event.__class__
        if cls is int:
            self._on_send_level(event)
        elif cls is bytes:
            if not self._closed and not self.protocol.eof_received():
                self.close()
        else:
            self._fail(event)

    # -- sending -------------------------------------------------------------

    def write(self, data) -> None:
        """Queue ``data`` for sending, in order. Raises RuntimeError after
        close(); after the connection is lost, writes are dropped."""
        # (connection_write, at the end of this module, replaces this with
        # the same steps in C for the common case: a change here is a change
        # there, and tests/test_contracts.py fails until both agree.)
        if self._closing:
            if self._closed:
                return
            if not self._writes_after_close:
                raise RuntimeError("write() after close()")
        if self._eof:
            raise RuntimeError("write() after write_eof()")
        if data.__class__ is not bytes:
            data = bytes(data)   # the caller may change it after we return
        if self._queue:   # a file goes out first; these bytes wait their turn
            if self._queue[0].__class__ is _QueuedFile and self._queue[0].exclusive:
                raise RuntimeError("unable to write; sendfile is in progress")
            self._queue.append(data)
            return
        if self._write(data) > self._high and not self._paused_writing:
            self._pause_writing()

    def sendfile(self, file, offset: int = 0, count: int | None = None,
                 close: bool = False, done: Callable[[object], object] | None = None,
                 exclusive: bool = False, read_up_to: int = 0) -> None:
        """Send ``count`` bytes (default: to the end) of ``file`` (an open
        file, kept referenced until sent) from ``offset``, in order with the
        writes around it, without copying them through Python. With
        ``close``, the file is closed once sent or once the connection is;
        ``done(count)`` runs once it is sent, ``done(exc)`` if the
        connection ends first (``exc.sent``, where set, counts the bytes the
        socket took). With ``exclusive`` (asyncio's ``loop.sendfile``),
        ``write`` raises RuntimeError until the file is sent.

        A file of at most ``read_up_to`` bytes is read instead (one file
        read on the loop) and its bytes written into the send stream behind
        what precedes them: for a small file that beats splice or sendfile,
        which must wait for the stream to drain first
        (benchmarks/static_bench.py measures where). A file that then
        holds fewer bytes than promised fails the connection (EIO): a
        response cut short must not look complete."""
        if self._closing:
            raise RuntimeError("sendfile() after close()")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if self._queue is None:
            self._queue = deque()
        item = _QueuedFile(file, offset, count, close, done, exclusive, count <= read_up_to)
        self._queue.append(item)
        if len(self._queue) == 1:
            self._next_file()

    def _next_file(self) -> None:
        # The file at the head of the queue goes, if it can: a read one at
        # once, a spliced one once what was written before it is out.
        assert self._queue is not None   # sendfile() made it
        item = self._queue[0]
        if item.sending:
            return
        if item.read:
            item.sending = True
            buf = bytearray(item.count)
            self._loop.file_read(item.file.fileno(), buf, item.offset,
                                 functools.partial(self._file_read, item, buf))
        elif self._stream.notify(0):
            item.sending = True
            self._loop.sendfile(self.fd, item.file.fileno(), item.offset, item.count,
                                functools.partial(self._file_sent, item))

    def _file_read(self, item: _QueuedFile, buf: bytearray, res) -> None:
        # Its bytes join the stream where the file stood in the queue.
        if res.__class__ is int and res != item.count:
            res = OSError(errno.EIO, f"{item.file.name!r} held {res} of the "
                                     f"{item.count} bytes to send")
        if res.__class__ is int and not self._closed:
            self._write(bytes(buf))
        self._file_sent(item, res)

    def _file_sent(self, item: _QueuedFile, res) -> None:
        # The loop's report on the file in flight: its count, or the error
        # that ended it -- ECANCELED when the connection closed first. Either
        # way the error carries how far the file got (``sent``).
        if res.__class__ is not int:
            self._fail(res)   # (nothing, if the connection had ended already)
            item.over(with_sent(self._why_closed(), getattr(res, "sent", 0)))
            return
        if self._closed:
            item.over(res)
            return
        queue = self._queue
        assert queue is not None   # sendfile() made it
        queue.popleft()
        item.over(res)
        # Bytes queued behind the file go to the stream; a file behind them
        # goes when it can.
        while queue and queue[0].__class__ is bytes:
            data = queue.popleft()
            self._write(data)
        if queue:
            self._next_file()
        else:
            self._finish_if_drained()

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def _pause_writing(self) -> None:
        self._paused_writing = True
        self._stream.notify(self._low)
        self._protocol.pause_writing()

    def _on_send_level(self, res: int) -> None:
        if self._closed:
            return
        if self._paused_writing and res <= self._low:
            self._paused_writing = False
            self._protocol.resume_writing()
        if self._queue:
            if res == 0:
                self._next_file()   # what was written before the file is out
            return
        if self._eof == 1 and (res == 0 or self._stream.notify(0)):
            self._shutdown_write()
        self._finish_if_drained()

    def write_eof(self) -> None:
        """Send FIN once the queued writes are out; receiving goes on (a
        server that refuses a request reads the rest before closing, so the
        peer sees the answer and not a reset)."""
        if self._closing or self._eof:
            return
        self._eof = 1
        if self._stream.notify(0):
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        self._eof = 2
        sock = _sock(self.fd)
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
        """Close now, dropping queued writes: if any were dropped, the peer
        gets a reset, so a stream cut short never looks complete."""
        self._closing = True
        self._finish()

    def reset(self, exc: Exception | None = None) -> None:
        """Close now with a reset (RST), whatever is queued: the peer sees
        the stream cut short, never a clean end. ``exc`` goes to
        ``connection_lost``. A proxy passes a reset on this way."""
        if self._closed:
            return
        self._set_linger_reset()
        self._exc = exc
        self._closing = True
        self._finish()

    def _set_linger_reset(self) -> None:
        # SO_LINGER 0: close() sends RST and drops what the kernel holds.
        sock = _sock(self.fd)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass   # already reset by the peer: nothing to cut
        finally:
            sock.detach()

    def _fail(self, exc: Exception) -> None:
        if self._closed:
            return
        self._exc = exc
        self._closing = True
        self._finish()

    def _why_closed(self) -> Exception:
        # What a file queued on the ended connection is told.
        return self._exc or ConnectionAbortedError("the connection was closed")

    # asyncio's sslproto ends a connection after a fatal TLS error with its
    # transports' private _force_close(exc): abort, with exc for connection_lost.
    _force_close = _fail

    def _cut_short(self) -> bool:
        # Bytes the peer was meant to get and will not: ours not yet taken
        # by the kernel, or -- when it is the peer who stopped -- the
        # kernel's own, unacknowledged, which a FIN would only queue behind.
        if self._stream.buffered or self._queue:
            return True
        return self._exc.__class__ is TimeoutError and unacknowledged(self.fd) > 0

    def _finish(self) -> None:
        if self._closed:
            return
        if self._cut_short():
            self._set_linger_reset()
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for item in self._queue or ():
            # The file in flight is over when the loop says so (_file_sent),
            # which close_fd below brings about.
            if item.__class__ is _QueuedFile and not item.sending:
                item.over(self._why_closed())
        self._queue = None
        self._stream.close()
        if self._sock is not None:
            self._sock.detach()   # fd is ours to close, and it is closed now
        self._loop.close_fd(self.fd)
        self._loop.call_soon(self._connection_lost)

    def _connection_lost(self) -> None:
        try:
            self._protocol.connection_lost(self._exc)
        finally:
            if self._on_closed is not None:
                self._on_closed(self)
            # Over: let go of what refers back to this connection (its
            # protocol, which may hold it, and its own bound methods), so
            # both go by reference counting, as asyncio's transports do.
            self._protocol = self._on_closed = None  # type: ignore[assignment]
            self._deliver = self._events = drop  # type: ignore[assignment]


# Connection.write as written above: what the C write hands every case but
# the common one to, and what tests/test_contracts.py drives beside the C
# write through the same cases, so that the two cannot drift apart.
python_write = Connection.write
try:
    # The same steps in C for the common write, without this frame
    # (_build/_core/fastpath.c, connection_write): a write of a C protocol
    # reaches the stream's C writer with no Python in between.
    from .._core._fastpath import connection_write as _connection_write
except ImportError:   # (not built: the Python write serves)
    pass
else:
    Connection.write = _connection_write(Connection, python_write)  # type: ignore[method-assign]
