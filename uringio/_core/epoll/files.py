"""File operations on the epoll loop: each a plain system call on a small
worker pool, its result handed back to the loop with
``call_soon_threadsafe`` (``_core/files.py`` says why: readiness says
nothing about a regular file; ``uring/files.py`` is the other half).
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ...errors import LoopClosedError
from ..files import SYNC_ALL, SYNC_DATA, SYNC_NONE, checked_path, file_error

# Workers of the pool: enough to keep a disk's queue busy, few enough that
# an idle loop costs little (they start on first use).
POOL_WORKERS = 8


class EpollFiles:
    """File operations as blocking calls on worker threads (the epoll
    loop's): each ``handler(result)`` runs on the loop, ``result`` an
    OSError when the call raised."""

    call_soon_threadsafe: Callable[..., Any]
    _closed: bool

    def _init_files(self) -> None:
        self._jobs: deque[tuple[Callable[..., Any], tuple, Callable[[Any], Any]]] = deque()
        self._jobs_ready = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0

    def _run_in_pool(self, call: Callable[..., Any], args: tuple,
                     handler: Callable[[Any], Any]) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed")
        with self._jobs_ready:
            self._jobs.append((call, args, handler))
            if not self._idle_workers and len(self._workers) < POOL_WORKERS:
                worker = threading.Thread(target=self._work, name="uringio-files", daemon=True)
                self._workers.append(worker)
                worker.start()
            else:
                self._jobs_ready.notify()

    def _work(self) -> None:
        while True:
            with self._jobs_ready:
                while not self._jobs:
                    if self._closed:
                        return
                    self._idle_workers += 1
                    self._jobs_ready.wait()
                    self._idle_workers -= 1
                call, args, handler = self._jobs.popleft()
            result: Any
            try:
                result = call(*args)
            except OSError as exc:
                result = file_error(exc)
            except Exception as exc:   # (a bad argument: the caller's error, not the pool's)
                result = exc
            try:
                self.call_soon_threadsafe(handler, result)
            except LoopClosedError:
                return   # nobody is left to hear it
            del call, args, handler, result   # the caller's buffer is theirs again

    def _close_files(self) -> None:
        # Workers finish the call they are in (a system call cannot be
        # taken back) and leave; queued jobs are dropped.
        with self._jobs_ready:
            self._jobs.clear()
            self._jobs_ready.notify_all()
        for worker in self._workers:
            worker.join(5.0)

    # -- the operations ------------------------------------------------------

    def file_open(self, path: bytes, flags: int, mode: int, handler) -> None:
        self._run_in_pool(_open, (checked_path(path), flags | os.O_CLOEXEC, mode), handler)

    def file_read(self, fd: int, buf, offset: int, handler) -> None:
        self._run_in_pool(_read_into, (fd, memoryview(buf).cast("B"), offset), handler)

    def file_write(self, fd: int, data, offset: int, handler, sync: int = SYNC_NONE) -> None:
        self._run_in_pool(_write_all, (fd, bytes(data), offset, sync), handler)

    def file_sync(self, fd: int, datasync: bool, handler) -> None:
        self._run_in_pool(os.fdatasync if datasync else os.fsync, (fd,), _zero(handler))

    def file_stat(self, path: bytes | None, fd: int, follow: bool, handler) -> None:
        if path is None:
            self._run_in_pool(os.fstat, (fd,), handler)
        else:
            self._run_in_pool(_stat, (checked_path(path), follow), handler)

    def file_allocate(self, fd: int, offset: int, length: int, handler) -> None:
        self._run_in_pool(os.posix_fallocate, (fd, offset, length), _zero(handler))

    def file_copy(self, src_fd: int, dst_fd: int, offset: int, count: int, handler) -> None:
        self._run_in_pool(_copy, (src_fd, dst_fd, offset, count), handler)

    def path_unlink(self, path: bytes, directory: bool, handler) -> None:
        self._run_in_pool(os.rmdir if directory else os.unlink, (checked_path(path),),
                          _zero(handler))

    def path_rename(self, old: bytes, new: bytes, handler) -> None:
        self._run_in_pool(os.rename, (checked_path(old), checked_path(new)), _zero(handler))

    def path_mkdir(self, path: bytes, mode: int, handler) -> None:
        self._run_in_pool(os.mkdir, (checked_path(path), mode), _zero(handler))


def _zero(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # Calls that return None report 0, as their io_uring CQEs do.
    return lambda result: handler(0 if result is None else result)


def _open(path: bytes, flags: int, mode: int) -> int:
    return os.open(path, flags, mode)


def _stat(path: bytes, follow: bool) -> os.stat_result:
    return os.stat(path, follow_symlinks=follow)


def _read_into(fd: int, view: memoryview, offset: int) -> int:
    # Short reads continued: fewer bytes than asked only at end of file.
    done = 0
    while done < len(view):
        part = view[done:]
        n = os.readv(fd, [part]) if offset < 0 else os.preadv(fd, [part], offset + done)
        if n == 0:
            break
        done += n
    return done


def _copy(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    done = 0
    while done < count:
        n = os.copy_file_range(src_fd, dst_fd, count - done, offset + done)
        if n == 0:
            break   # the source ended first
        done += n
    return done


def _write_all(fd: int, data: bytes, offset: int, sync: int) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.write(fd, view[done:]) if offset < 0 else os.pwrite(fd, view[done:], offset + done)
        if n == 0:   # the file takes nothing more: neither a whole write nor a loop forever
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        done += n
    if sync == SYNC_DATA:
        os.fdatasync(fd)
    elif sync == SYNC_ALL:
        os.fsync(fd)
    return done
