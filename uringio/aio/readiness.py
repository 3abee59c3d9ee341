"""What uringio's asyncio loop runs on readiness rather than completions.

TCP and Unix stream sockets are uringio's own transports, on completions
(``loop.py``). What is left waits for readiness, as asyncio's selector loop
does, on the core's ``watch`` (a re-armed poll operation on io_uring, epoll
interest on epoll):

* ``add_reader`` / ``add_writer``, for libraries that do their own IO;
* UDP (``create_datagram_endpoint``, ``sock_recvfrom``, ``sock_sendto``):
  a datagram is read whole by one ``recvfrom``, so waiting for readiness
  and then reading costs no more than a receive operation would;
* pipes, ptys and subprocesses, whose transports are asyncio's own Unix
  ones: they call the loop's ``_add_reader`` / ``_add_writer``, which are
  here. A child's exit is a readable pidfd (Linux 5.3+), watched by the
  loop itself, so no child watcher or SIGCHLD handler is involved.

The transports are asyncio's (``selector_events``, ``unix_events``): their
behaviour is asyncio's, bug for bug, and CPython's test suite holds them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import selectors
import socket
import threading
import warnings
from asyncio import events, selector_events, unix_events
from collections.abc import Callable
from typing import Any

from .._core import Loop


class ReadinessMixin(asyncio.AbstractEventLoop):
    """The loop's readiness half (mixed into ``EventLoop``)."""

    _core: Loop
    # add_reader / add_writer: fd -> the handle the core's watch queues.
    _fd_watches: tuple[dict[int, events.Handle], dict[int, events.Handle]]
    _child_pidfds: set[int]   # the children this loop waits for
    _transports: Any          # fd -> transport (EventLoop's)

    def _init_readiness(self) -> None:
        self._fd_watches = ({}, {})
        self._child_pidfds = set()

    # -- readiness callbacks -------------------------------------------------

    def add_reader(self, fd, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # The unchecked forms, which asyncio's own transports call.

    def _add_reader(self, fd, callback, *args) -> events.Handle:
        return self._add_watch(fd, False, callback, args)

    def _remove_reader(self, fd) -> bool:
        return self._remove_watch(fd, False)

    def _add_writer(self, fd, callback, *args) -> events.Handle:
        return self._add_watch(fd, True, callback, args)

    def _remove_writer(self, fd) -> bool:
        return self._remove_watch(fd, True)

    def _ensure_fd_no_transport(self, fd) -> None:
        fd = _fileno(fd)
        transport = self._transports.get(fd)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd} is used by transport {transport!r}")

    def _add_watch(self, fd, writable: bool, callback, args) -> events.Handle:
        # The core's watch is level-triggered: it queues the handle once per
        # turn while fd is ready, as asyncio's selector loop does.
        self._check_closed()
        fd = _fileno(fd)
        handle = events.Handle(callback, args, self, None)
        watches = self._fd_watches[writable]
        old = watches.get(fd)
        watches[fd] = handle
        if old is not None:   # a new callback replaces the old one
            old.cancel()
        else:
            self._core.watch(fd, writable, functools.partial(self._watched, fd, writable))
        return handle

    def _watched(self, fd: int, writable: bool, result: object) -> None:
        handle = self._fd_watches[writable].get(fd)
        if isinstance(result, BaseException):
            self._fd_watches[writable].pop(fd, None)
            self.call_exception_handler({"message": f"watching fd {fd} failed",
                                         "exception": result})
        elif handle is not None and not handle._cancelled:
            self._ready.append(handle)

    def _remove_watch(self, fd, writable: bool) -> bool:
        if self.is_closed():
            return False
        fd = _fileno(fd)
        handle = self._fd_watches[writable].pop(fd, None)
        if handle is None:
            return False
        handle.cancel()
        self._core.unwatch(fd, writable)
        return True

    def _watching(self, fd: int) -> int:
        """The selectors event mask fd is watched for (0: none)."""
        return ((selectors.EVENT_READ if fd in self._fd_watches[False] else 0)
                | (selectors.EVENT_WRITE if fd in self._fd_watches[True] else 0))

    async def _when_ready(self, sock: socket.socket, writable: bool, method: str,
                          *args: Any) -> Any:
        # sock.<method>(*args), non-blocking, tried at once and again each
        # time the socket is ready until it does not raise BlockingIOError.
        # The method is looked up on each try, as asyncio's loop does.
        self._check_sock(sock)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._add_watch(fd, writable, _retry, (fut, sock, method, args))
        fut.add_done_callback(functools.partial(self._unwatch_for, fd, writable))
        return await fut

    def _unwatch_for(self, fd: int, writable: bool, fut: asyncio.Future) -> None:
        self._remove_watch(fd, writable)

    # -- UDP -------------------------------------------------------------------

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return selector_events._SelectorDatagramTransport(self, sock, protocol, address,
                                                          waiter, extra)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        return await self._when_ready(sock, False, "recvfrom", bufsize)

    async def sock_recvfrom_into(self, sock: socket.socket, buf, nbytes: int = 0):
        return await self._when_ready(sock, False, "recvfrom_into", buf,
                                      nbytes or len(memoryview(buf)))

    async def sock_sendto(self, sock: socket.socket, data, address) -> int:
        return await self._when_ready(sock, True, "sendto", data, address)

    # -- pipes and subprocesses ----------------------------------------------

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return unix_events._UnixReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return unix_events._UnixWritePipeTransport(self, pipe, protocol, waiter, extra)

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        waiter = self.create_future()
        with warnings.catch_warnings():
            # 3.12 deprecates the child watchers, which asyncio's Unix
            # subprocess transport still names; this loop uses none.
            warnings.simplefilter("ignore", DeprecationWarning)
            transp = unix_events._UnixSubprocessTransport(
                self, protocol, args, shell, stdin, stdout, stderr, bufsize,
                waiter=waiter, extra=extra, **kwargs)
        self._watch_child(transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, transp) -> None:
        # A pidfd turns readable when the child exits: one watch, no signal
        # handler, nothing shared with other loops. Without pidfds (Linux
        # before 5.3), a thread waits instead, as asyncio's
        # ThreadedChildWatcher does.
        pid = transp.get_pid()
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            threading.Thread(target=self._wait_child_thread, args=(pid, transp),
                             name=f"waitpid-{pid}", daemon=True).start()
            return
        self._child_pidfds.add(pidfd)
        self._add_watch(pidfd, False, self._child_exited, (pidfd, pid, transp))

    def _child_exited(self, pidfd: int, pid: int, transp) -> None:
        # The transport's close() polls its Popen, which may have reaped
        # the child already; then Popen has its exit code.
        returncode = getattr(transp._proc, "returncode", None)
        if returncode is None:
            returncode = _reap(pid)
        if returncode is None:
            return   # not reapable yet: the watch stays
        self._forget_pidfd(pidfd)
        transp._process_exited(returncode)

    def _forget_pidfd(self, pidfd: int) -> None:
        self._remove_watch(pidfd, False)
        self._child_pidfds.discard(pidfd)
        os.close(pidfd)

    def _close_readiness(self) -> None:
        # At loop close: no watch outlives the loop, no pidfd leaks.
        for pidfd in list(self._child_pidfds):
            self._forget_pidfd(pidfd)
        for writable, watches in enumerate(self._fd_watches):
            for fd in list(watches):
                self._remove_watch(fd, bool(writable))

    def _wait_child_thread(self, pid: int, transp) -> None:
        returncode = _reap(pid, blocking=True)
        if not self.is_closed():
            self.call_soon_threadsafe(transp._process_exited, returncode)


def _reap(pid: int, blocking: bool = False) -> int | None:
    # The child's exit code (as subprocess reports it: -N for signal N);
    # None if it has not exited; 255 when someone else reaped it (asyncio
    # says the same then).
    try:
        got, status = os.waitpid(pid, 0 if blocking else os.WNOHANG)
    except ChildProcessError:
        warnings.warn(f"child process pid {pid} was reaped by someone else; "
                      "its exit status is unknown", RuntimeWarning, stacklevel=2)
        return 255
    return os.waitstatus_to_exitcode(status) if got else None


def _retry(fut: asyncio.Future, sock: socket.socket, method: str, args: tuple) -> None:
    if fut.done():
        return
    try:
        result = getattr(sock, method)(*args)
    except (BlockingIOError, InterruptedError):
        return   # not ready after all: the watch stays
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _fileno(fileobj) -> int:
    # What selectors accept: an int, or an object with fileno().
    fd = fileobj if isinstance(fileobj, int) else int(fileobj.fileno())
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd
