"""ReactorLoop: the epoll readiness loop (backend "epoll").

What the kernel guarantees, and what it forces on this code:

* epoll says an fd is *ready*, never that IO is done: the program then makes
  the non-blocking syscall itself and copies the bytes in user space. Ready
  can be stale (another reader, a spurious wakeup), so EAGAIN is normal and
  just means "wait again".
* Level-triggered registrations report an fd for as long as it is ready, so
  interest is dropped as soon as nobody wants its events, and an fd with no
  interest left is unregistered (EPOLLHUP/EPOLLERR are reported regardless
  of the mask and would spin the loop).

The same completion interface as the proactor is emulated on top, the way
Boost.Asio does on Linux: a send is *tried first* and registers for
EPOLLOUT only when the socket buffer is full; a receive stream keeps its
EPOLLIN registration for its whole life instead of re-adding it per read.
Completions found without waiting (a send that went out at once) are queued
as callbacks, so a handler never runs inside the call that started it.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import socket
from collections import deque
from collections.abc import Callable
from itertools import islice

from ...errors import BusyResourceError, os_error, with_sent
from ..interface import Handler
from ..loop import BaseLoop, Timer
from .files import EpollFiles
from .relay import EpollRelay
from .send_stream import EpollSendStream

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_ERRS = select.EPOLLERR | select.EPOLLHUP
_EMPTY = b""
_IOV_MAX = 1024   # writev(2) takes at most IOV_MAX buffers


class _Sendfile:
    """A sendfile(2) in progress on one socket."""

    __slots__ = ("file_fd", "offset", "left", "handler", "total")

    def __init__(self, file_fd: int, offset: int, count: int, handler: Handler) -> None:
        self.file_fd = file_fd
        self.offset = offset     # of the file's next byte to send
        self.left = count        # bytes still to send
        self.handler = handler
        self.total = count


class _FdState:
    """What the loop wants from one fd: a reader and queued writes."""

    __slots__ = ("fd", "on_readable", "handler", "end_handler", "nbytes", "sock", "writes",
                 "buffered", "sent", "stream", "mask", "dirty", "timer", "sendfile",
                 "connecting", "watch_read", "watch_write")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # the loop's _read_stream, _read_once or _read_accept
        self.on_readable: Callable[[_FdState], None] | None = None
        self.handler: Handler | None = None       # the caller's handler for that reader
        self.end_handler: Handler | None = None   # a receive stream's, for EOF and errors
        self.nbytes = 0
        self.sock: socket.socket | None = None    # the listening socket, for accept
        self.writes: deque = deque()   # [memoryview left, handler or None, total]
        self.buffered = 0         # bytes in writes
        self.sent = 0             # bytes of writes the kernel took: progress
        self.stream: EpollSendStream | None = None
        self.mask = 0
        self.dirty = False        # stream bytes to write before the next wait
        self.timer: Timer | None = None          # a one-shot recv's deadline
        self.sendfile: _Sendfile | None = None
        self.connecting: Handler | None = None   # a connect's handler, until writable
        self.watch_read: Handler | None = None   # watch(): readiness callbacks
        self.watch_write: Handler | None = None


class ReactorLoop(EpollRelay, EpollFiles, BaseLoop):
    """The ``Loop`` (interface.py) on epoll, emulated over readiness."""

    backend = "epoll"
    read_files_up_to = 0   # interface.py says why
    OPTIONS = ("recv_size", "max_events")

    def __init__(self, recv_size: int = 65536, max_events: int = 1024) -> None:
        super().__init__()
        self._init_files()
        self._epoll = select.epoll()
        self.waits = self.events = 0   # epoll_wait calls, and the events they returned
        self._fds: dict[int, _FdState] = {}
        self._relays = {}
        self._recv_size = recv_size
        self._max_events = max_events
        self._epoll.register(self._wakeup_fd, _EPOLLIN)
        self._dirty: list[_FdState] = []   # send streams written to this turn
        # Set when a handler ran during the flush before the wait: what it
        # queued (here, or in a loop above this one) must not wait for IO.
        self._reported = False

    # -- the turn ------------------------------------------------------------

    def engine_counters(self) -> dict[str, int]:
        return {"waits": self.waits, "completions": self.events}

    def _poll(self, timeout: float | None) -> None:
        if self._dirty:
            self._reported = False
            self._flush_streams()
            if self._reported or self._ready:
                timeout = 0
        events = self._epoll.poll(-1 if timeout is None else timeout, self._max_events)
        self.waits += 1
        self.events += len(events)
        fds = self._fds
        i, n = 0, len(events)
        while i < n:
            try:
                while i < n:
                    fd, ev = events[i]
                    i += 1
                    st = fds.get(fd)
                    if st is None:
                        if fd == self._wakeup_fd:
                            self._drain_wakeup()
                        continue   # closed by an earlier handler in this batch
                    if ev & _EPOLLIN or (ev & _EPOLL_ERRS and st.on_readable):
                        if st.on_readable is not None:
                            st.on_readable(st)
                            if fds.get(fd) is not st:
                                continue   # its handler closed it
                    if st.writes and ev & (_EPOLLOUT | _EPOLL_ERRS):
                        self._write_more(st)
                    elif st.sendfile is not None and ev & (_EPOLLOUT | _EPOLL_ERRS):
                        self._sendfile_more(st)
                    elif st.connecting is not None and ev & (_EPOLLOUT | _EPOLL_ERRS):
                        self._connected(st)
                    if st.watch_read is not None and ev & (_EPOLLIN | _EPOLL_ERRS):
                        st.watch_read(0)
                    if st.watch_write is not None and ev & (_EPOLLOUT | _EPOLL_ERRS):
                        st.watch_write(0)
            except Exception:
                self._handler_failed(events[i - 1])

    def _drain_wakeup(self) -> None:
        try:
            os.read(self._wakeup_fd, 4096)   # (what is left, if any, wakes the next turn)
        except BlockingIOError:
            pass

    def _state(self, fd: int) -> _FdState:
        st = self._fds.get(fd)
        if st is None:
            st = self._fds[fd] = _FdState(fd)
        return st

    def _update(self, st: _FdState) -> None:
        # Keep the registration in step with what is wanted, one epoll_ctl
        # only when that changes; forget an fd nothing is wanted from (its
        # number may be reused once it is closed).
        mask = ((_EPOLLIN if st.on_readable is not None or st.watch_read else 0)
                | (_EPOLLOUT if st.writes or st.sendfile or st.connecting or st.watch_write
                   else 0))
        if mask != st.mask:
            if mask == 0:
                try:
                    self._epoll.unregister(st.fd)
                except OSError:
                    # The fd was closed since (EBADF; ENOENT once its number
                    # is reused): epoll dropped it with its file, and this
                    # state goes all the same, as selectors.EpollSelector
                    # does. The caller of an asyncio sock_* call may close
                    # the socket before cancelling the call.
                    pass
            elif st.mask == 0:
                self._epoll.register(st.fd, mask)
            else:
                self._epoll.modify(st.fd, mask)
            st.mask = mask
        if mask == 0 and st.stream is None and self._fds.get(st.fd) is st:
            del self._fds[st.fd]

    def _set_reader(self, fd: int, on_readable, handler, what: str) -> _FdState:
        self._check_open()
        st = self._state(fd)
        if st.on_readable is not None:
            raise BusyResourceError(f"{what} is already in flight on fd {fd}")
        st.on_readable = on_readable
        st.handler = handler
        self._update(st)
        return st

    def _clear_reader(self, st: _FdState) -> None:
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        st.on_readable = st.handler = st.end_handler = st.sock = None
        self._update(st)

    # -- accept --------------------------------------------------------------

    def accept(self, sock: socket.socket, handler, once: bool = False,
               shared: bool = False) -> None:
        # (``shared`` changes nothing here: epoll wakes every process that
        # waits on the listener, and the first to call accept(2) has it.)
        sock.setblocking(False)
        reader = self._read_accept_once if once else self._read_accept
        st = self._set_reader(sock.fileno(), reader, handler, "an accept")
        st.sock = sock

    def cancel_accept(self, sock: socket.socket) -> None:
        st = self._fds.get(sock.fileno())
        if st is not None and st.on_readable in (self._read_accept, self._read_accept_once):
            self._clear_reader(st)

    def _read_accept_once(self, st: _FdState) -> None:
        handler = st.handler
        assert handler is not None and st.sock is not None   # accept() set both
        try:
            conn, _addr = st.sock.accept()
        except BlockingIOError:
            return   # stale readiness: another process took it
        except OSError as exc:
            self._clear_reader(st)
            handler(exc)
            return
        self._clear_reader(st)
        conn.setblocking(False)
        handler(conn.detach())

    def _read_accept(self, st: _FdState) -> None:
        handler = st.handler
        assert handler is not None and st.sock is not None   # accept() set both
        for _ in range(64):   # a bounded batch, so a flood cannot starve IO
            try:
                conn, _addr = st.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._clear_reader(st)
                handler(exc)
                return
            conn.setblocking(False)
            handler(conn.detach())
            if st.on_readable is None:   # the handler cancelled accepting
                return

    # -- receive -------------------------------------------------------------

    def start_recv(self, fd: int, handler, end_handler=None) -> None:
        st = self._set_reader(fd, self._read_stream, handler, "a recv")
        st.end_handler = end_handler or handler

    def stop_recv(self, fd: int) -> None:
        # Unread bytes simply stay in the socket until the next start_recv.
        st = self._fds.get(fd)
        if st is None or st.on_readable is None or st.on_readable in (
                self._read_accept, self._read_accept_once):
            return
        once = st.on_readable == self._read_once
        handler = st.handler
        self._clear_reader(st)
        if once:
            assert handler is not None   # recv() set it
            self._ready.append((handler, (os_error(errno.ECANCELED),)))

    def _read_stream(self, st: _FdState) -> None:
        try:
            data = os.read(st.fd, self._recv_size)
        except BlockingIOError:
            return   # stale readiness
        except OSError as exc:
            end_handler = st.end_handler
            assert end_handler is not None   # start_recv set it
            self._clear_reader(st)
            end_handler(exc)
            return
        if data:
            assert st.handler is not None   # set while reading
            st.handler(data)
            return
        end_handler = st.end_handler
        assert end_handler is not None   # start_recv set it
        self._clear_reader(st)
        end_handler(_EMPTY)

    def recv(self, fd: int, nbytes: int, handler, timeout: float | None = None) -> None:
        st = self._set_reader(fd, self._read_once, handler, "a recv")
        st.nbytes = nbytes
        if timeout is not None:
            st.timer = self.call_later(timeout, self._recv_expired, st, handler)

    def _recv_expired(self, st: _FdState, handler: Handler) -> None:
        if st.handler is handler and st.on_readable == self._read_once:
            st.timer = None
            self._clear_reader(st)
            handler(os_error(errno.ETIMEDOUT))

    def _read_once(self, st: _FdState) -> None:
        result: bytes | OSError
        try:
            result = os.read(st.fd, st.nbytes)
        except BlockingIOError:
            return
        except OSError as exc:
            result = exc
        handler = st.handler
        assert handler is not None   # recv() set it
        self._clear_reader(st)
        handler(result)

    # -- readiness -----------------------------------------------------------

    def watch(self, fd: int, writable: bool, handler, once: bool = False) -> None:
        # What epoll does natively: interest for as long as it is wanted.
        self._check_open()
        st = self._state(fd)
        if (st.watch_write if writable else st.watch_read) is not None:
            raise BusyResourceError(f"fd {fd} is watched already")
        if once:
            handler = functools.partial(self._watched_once, fd, writable, handler)
        if writable:
            st.watch_write = handler
        else:
            st.watch_read = handler
        self._update(st)

    def _watched_once(self, fd: int, writable: bool, handler, res) -> None:
        try:
            self.unwatch(fd, writable)
        except OSError as exc:   # closed behind our back (a dup keeps its file)
            res = exc
        handler(res)

    def unwatch(self, fd: int, writable: bool) -> bool:
        st = self._fds.get(fd)
        if st is None or (st.watch_write if writable else st.watch_read) is None:
            return False
        if writable:
            st.watch_write = None
        else:
            st.watch_read = None
        self._update(st)
        return True

    # -- connect -------------------------------------------------------------

    def connect(self, sock: socket.socket, address, handler) -> None:
        # Tried at once; a handshake in progress completes when the socket
        # is writable, its result in SO_ERROR (connect(2), EINPROGRESS).
        self._check_open()
        err = sock.connect_ex(address)
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            st = self._state(sock.fileno())
            if st.connecting is not None:
                raise BusyResourceError(f"a connect is already in flight on fd {st.fd}")
            st.connecting = handler
            self._update(st)
            return
        self._ready.append((handler, (os_error(err) if err else 0,)))

    def _connected(self, st: _FdState) -> None:
        handler = st.connecting
        assert handler is not None
        st.connecting = None
        self._update(st)
        sock = socket.socket(fileno=st.fd)
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        finally:
            sock.detach()
        handler(os_error(err) if err else 0)

    # -- send ----------------------------------------------------------------

    def send(self, fd: int, data, handler) -> None:
        self._check_open()
        if data.__class__ is not bytes:
            data = bytes(data)
        st = self._fds.get(fd)
        if st is None or not st.writes:
            # Try the syscall first: most sends fit in the socket buffer and
            # never need EPOLLOUT.
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._ready.append((handler, (exc,)))
                return
            if sent == len(data):
                self._ready.append((handler, (sent,)))
                return
            st = self._state(fd)
            st.writes.append([memoryview(data)[sent:], handler, len(data)])
            st.buffered += len(data) - sent
            self._update(st)
        else:
            st.writes.append([memoryview(data), handler, len(data)])
            st.buffered += len(data)

    def _flush_streams(self) -> None:
        # What send streams were given this turn goes out now, before the
        # wait: one write (or writev) per socket, as the proactor submits one
        # send per socket per turn, and as Redis flushes its clients' replies
        # in beforeSleep().
        dirty, self._dirty = self._dirty, []
        for st in dirty:
            st.dirty = False
            writes = st.writes
            stream = st.stream
            if stream is not None:
                stream.sends += 1
            if len(writes) == 1 and not st.mask & _EPOLLOUT:
                # The common case, inline: one buffer, written whole.
                data = writes[0][0]
                try:
                    sent = os.write(st.fd, data)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._write_failed(st, exc)
                    continue
                st.sent += sent
                if sent == len(data) and writes[0][1] is None:
                    writes.clear()
                    st.buffered -= sent
                    if stream is not None and stream.notify_at >= 0:
                        self._check_level(stream, st)
                    continue
                st.buffered -= sent
                if sent:
                    writes[0][0] = memoryview(data)[sent:]
                self._update(st)   # EPOLLOUT for the rest
                continue
            try:
                self._write_more(st)
            except Exception:
                self._handler_failed(stream)

    def _check_level(self, stream: EpollSendStream, st: _FdState) -> None:
        if 0 <= stream.notify_at and st.buffered <= stream.notify_at:
            stream.notify_at = -1
            self._reported = True
            stream.handler(st.buffered)

    def _write_more(self, st: _FdState) -> None:
        writes = st.writes
        while writes:
            try:
                if len(writes) == 1:
                    sent = os.write(st.fd, writes[0][0])
                else:
                    sent = os.writev(st.fd, [entry[0] for entry in islice(writes, _IOV_MAX)])
            except BlockingIOError:
                break
            except OSError as exc:
                self._write_failed(st, exc)
                return
            st.buffered -= sent
            st.sent += sent
            while sent:
                entry = writes[0]
                left = len(entry[0])
                if sent < left:   # the socket is full: wait for EPOLLOUT
                    entry[0] = memoryview(entry[0])[sent:]
                    break
                sent -= left
                writes.popleft()
                if entry[1] is not None:
                    self._reported = True
                    entry[1](entry[2])
            else:
                continue
            break
        self._update(st)
        if st.stream is not None:
            self._check_level(st.stream, st)

    def _write_failed(self, st: _FdState, exc: OSError) -> None:
        # The socket is broken: every queued send, and the stream, fail with it.
        failed = list(st.writes)
        st.writes.clear()
        st.buffered = 0
        self._update(st)
        self._reported = True
        for _view, handler, _total in failed:
            if handler is not None:
                handler(exc)
        stream = st.stream
        if stream is not None and not stream.failed:
            stream.failed = exc.errno or errno.EPIPE
            stream.handler(exc)

    # -- sendfile --------------------------------------------------------------

    def sendfile(self, fd: int, file_fd: int, offset: int, count: int, handler) -> None:
        # sendfile(2), tried at once; EPOLLOUT when the socket is full.
        self._check_open()
        st = self._state(fd)
        if st.sendfile is not None or st.writes:
            raise BusyResourceError(f"a send is already in flight on fd {fd}")
        st.sendfile = _Sendfile(file_fd, offset, count, handler)
        self._sendfile_more(st)

    def _sendfile_more(self, st: _FdState) -> None:
        job = st.sendfile
        assert job is not None   # sendfile() set it
        result: int | OSError = job.total
        while job.left:
            try:
                sent = os.sendfile(st.fd, job.file_fd, job.offset, job.left)
            except BlockingIOError:
                self._update(st)   # wait for EPOLLOUT
                return
            except OSError as exc:
                result = exc
                break
            if sent == 0:          # the file is shorter than promised
                result = os_error(errno.EPIPE)
                break
            job.offset += sent
            job.left -= sent
        if isinstance(result, OSError):
            with_sent(result, job.total - job.left)
        st.sendfile = None
        self._update(st)
        self._ready.append((job.handler, (result,)))

    # -- send streams --------------------------------------------------------

    def open_send_stream(self, fd: int, handler) -> EpollSendStream:
        self._check_open()
        st = self._state(fd)
        if st.stream is not None:
            raise BusyResourceError(f"a send stream is already open on fd {fd}")
        st.stream = EpollSendStream(self, st, handler)
        return st.stream

    # -- close ---------------------------------------------------------------

    def close_fd(self, fd: int, handler=None) -> None:
        self._check_open()
        if fd in self._relays:
            self._end_relays(fd)
        st = self._fds.pop(fd, None)
        if st is not None:
            if st.mask:
                self._epoll.unregister(fd)
            if st.timer is not None:
                st.timer.cancel()
            # Queued sends and a one-shot recv get ECANCELED; a receive
            # stream just ends.
            cancelled = [h for _view, h, _total in st.writes if h is not None]
            if st.connecting is not None:
                cancelled.append(st.connecting)
            if st.on_readable == self._read_once:
                cancelled.append(st.handler)
            for op_handler in cancelled:
                self._ready.append((op_handler, (os_error(errno.ECANCELED),)))
            job = st.sendfile
            if job is not None:
                cancelled_job = with_sent(os_error(errno.ECANCELED), job.total - job.left)
                self._ready.append((job.handler, (cancelled_job,)))
            if st.stream is not None:
                st.stream.close()
        result: int | OSError
        try:
            os.close(fd)
            result = 0
        except OSError as exc:
            result = exc
        if handler is not None:
            self._ready.append((handler, (result,)))

    def close(self) -> None:
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        for st in list(self._fds.values()):
            if st.stream is not None:
                st.stream.close()   # its writes refuse from now on
        self._drop_relays()
        self._fds.clear()
        self._epoll.close()
        super().close()
        self._close_files()
