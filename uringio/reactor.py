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
import os
import select
import socket
from collections import deque

from .errors import BusyResourceError, os_error
from .loop import BaseLoop

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_ERRS = select.EPOLLERR | select.EPOLLHUP
_EMPTY = b""


class _FdState:
    """What the loop wants from one fd: a reader and queued writes."""

    __slots__ = ("fd", "on_readable", "handler", "nbytes", "sock", "writes", "mask")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.on_readable = None   # the loop's _read_stream, _read_once or _read_accept
        self.handler = None       # the caller's handler for that reader
        self.nbytes = 0
        self.sock = None          # the listening socket, for accept
        self.writes: deque | None = None   # [memoryview left, handler, total]
        self.mask = 0


class ReactorLoop(BaseLoop):
    """epoll loop with the proactor's operation interface."""

    backend = "epoll"
    OPTIONS = ("recv_size", "max_events")

    def __init__(self, recv_size: int = 65536, max_events: int = 1024) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self._fds: dict[int, _FdState] = {}
        self._recv_size = recv_size
        self._max_events = max_events
        self._epoll.register(self._wakeup_fd, _EPOLLIN)

    # -- the turn ------------------------------------------------------------

    def _poll(self, timeout: float | None) -> None:
        events = self._epoll.poll(-1 if timeout is None else timeout, self._max_events)
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
                    if st.writes and ev & (_EPOLLOUT | _EPOLL_ERRS):
                        self._write_more(st)
            except Exception:
                self._handler_failed(events[i - 1])

    def _drain_wakeup(self) -> None:
        try:
            os.eventfd_read(self._wakeup_fd)
        except BlockingIOError:
            pass

    def _state(self, fd: int) -> _FdState:
        st = self._fds.get(fd)
        if st is None:
            st = self._fds[fd] = _FdState(fd)
        return st

    def _update(self, st: _FdState) -> None:
        # Keep the registration in step with what is wanted, one epoll_ctl
        # only when that changes.
        mask = (_EPOLLIN if st.on_readable is not None else 0) | (_EPOLLOUT if st.writes else 0)
        if mask == st.mask:
            return
        if mask == 0:
            self._epoll.unregister(st.fd)
            del self._fds[st.fd]
        elif st.mask == 0:
            self._epoll.register(st.fd, mask)
        else:
            self._epoll.modify(st.fd, mask)
        st.mask = mask

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
        st.on_readable = st.handler = st.sock = None
        self._update(st)

    # -- accept --------------------------------------------------------------

    def accept(self, sock: socket.socket, handler) -> None:
        """Accept connections on listening ``sock``: handler(fd) for each,
        until ``cancel_accept(sock)``; handler(OSError) ends accepting."""
        sock.setblocking(False)
        st = self._set_reader(sock.fileno(), self._read_accept, handler, "an accept")
        st.sock = sock

    def cancel_accept(self, sock: socket.socket) -> None:
        st = self._fds.get(sock.fileno())
        if st is not None and st.on_readable == self._read_accept:
            self._clear_reader(st)

    def _read_accept(self, st: _FdState) -> None:
        handler = st.handler
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

    def start_recv(self, fd: int, handler) -> None:
        """Receive on ``fd`` until EOF, an error or ``stop_recv``: handler(bytes),
        then handler(b"") at EOF or handler(OSError)."""
        self._set_reader(fd, self._read_stream, handler, "a recv")

    def stop_recv(self, fd: int) -> None:
        """Stop receiving on ``fd``; unread bytes stay in the socket."""
        st = self._fds.get(fd)
        if st is not None and st.on_readable == self._read_stream:
            self._clear_reader(st)

    def _read_stream(self, st: _FdState) -> None:
        try:
            data = os.read(st.fd, self._recv_size)
        except BlockingIOError:
            return   # stale readiness
        except OSError as exc:
            handler = st.handler
            self._clear_reader(st)
            handler(exc)
            return
        if data:
            st.handler(data)
            return
        handler = st.handler
        self._clear_reader(st)
        handler(_EMPTY)

    def recv(self, fd: int, nbytes: int, handler) -> None:
        """One receive of at most ``nbytes``: handler(bytes) (b"" at EOF) or
        handler(OSError)."""
        st = self._set_reader(fd, self._read_once, handler, "a recv")
        st.nbytes = nbytes

    def _read_once(self, st: _FdState) -> None:
        try:
            result = os.read(st.fd, st.nbytes)
        except BlockingIOError:
            return
        except OSError as exc:
            result = exc
        handler = st.handler
        self._clear_reader(st)
        handler(result)

    # -- send ----------------------------------------------------------------

    def send(self, fd: int, data, handler) -> None:
        """Send all of ``data`` (copied unless it is bytes): handler(len(data))
        when the last byte is out, or handler(OSError)."""
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
            st.writes = deque()
            st.writes.append([memoryview(data)[sent:], handler, len(data)])
            self._update(st)
        else:
            st.writes.append([memoryview(data), handler, len(data)])

    def _write_more(self, st: _FdState) -> None:
        writes = st.writes
        while writes:
            entry = writes[0]
            try:
                sent = os.write(st.fd, entry[0])
            except BlockingIOError:
                return
            except OSError as exc:
                # The stream is broken: every queued send fails with it.
                failed = list(writes)
                writes.clear()
                self._update(st)
                for _view, handler, _total in failed:
                    handler(exc)
                return
            if sent < len(entry[0]):
                entry[0] = entry[0][sent:]
                return
            writes.popleft()
            entry[1](entry[2])
        self._update(st)

    # -- close ---------------------------------------------------------------

    def close_fd(self, fd: int, handler=None) -> None:
        """Cancel every operation on ``fd``, then close it: handler(0) or
        handler(OSError). Pending sends get handler(OSError(ECANCELED));
        a receive stream on fd just ends."""
        self._check_open()
        st = self._fds.pop(fd, None)
        if st is not None:
            if st.mask:
                self._epoll.unregister(fd)
            for _view, send_handler, _total in st.writes or ():
                self._ready.append((send_handler, (os_error(errno.ECANCELED),)))
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
        self._fds.clear()
        self._epoll.close()
        super().close()
