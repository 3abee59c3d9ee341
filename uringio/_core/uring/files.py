"""File operations as io_uring SQEs (``_core/files.py`` says why the two
backends differ here; ``epoll/files.py`` is the worker-pool half).

Each operation is one SQE, many in flight from the loop's one thread; the
path, buffer or statx record it names is held by its Op until its final
CQE, also when the caller stopped waiting (the ownership rule). Reads,
which random-access readers make by the hundred thousand a second, have
no Op: they are prepared and completed in C (``FileReads`` in
_build/_core/fastpath.c), which holds each buffer the same way. A write
with ``sync`` is linked to its fsync (IOSQE_IO_LINK): both go in one
submission and the kernel starts the fsync only once the write is done.
A short read or write is continued from where it stopped; a short write
breaks the link (the kernel cancels the fsync), so the rest goes out
linked to a new one.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, cast

from ...errors import os_error
from ..files import SYNC_DATA, SYNC_NONE, checked_path, file_error, stat_result
from .buffers import pin
from .ops import Op, OpKind, OpTable
from .ring import IOSQE_IO_LINK, Ring, ffi, lib

try:
    from .._fastpath import FileReads
except ImportError:  # pragma: no cover - depends on the build (ring.py says why)
    FileReads = None

if lib is not None:   # (else the proactor refuses to start: ring.py)
    _AT_FDCWD, _AT_EMPTY_PATH, _AT_SYMLINK_NOFOLLOW, _AT_REMOVEDIR = (
        lib.AT_FDCWD, lib.AT_EMPTY_PATH, lib.AT_SYMLINK_NOFOLLOW, lib.AT_REMOVEDIR)
    _FSYNC_DATASYNC, _STATX_BASIC_STATS = lib.IORING_FSYNC_DATASYNC, lib.STATX_BASIC_STATS
_AT_POSITION = (1 << 64) - 1   # offset -1: the file's own position
_EMPTY_PATH = b"\0"


class _Write:
    """A file write in progress: where it goes, and its fsync, if any."""

    __slots__ = ("offset", "sync", "sync_op", "result")

    def __init__(self, offset: int, sync: int) -> None:
        self.offset = offset
        self.sync = sync
        self.sync_op: Op | None = None
        self.result: Any = None   # set once the write is over, reported after its fsync


class UringFiles:
    """The file operations of ``ProactorLoop`` (mixed into it)."""

    # The loop's own, which this mixin uses (declared, not defined: a
    # definition here would come before the loop's own in the MRO).
    _ops: OpTable
    _ring: Ring
    _check_open: Callable[[], None]
    _submit: Callable[[int], None]
    _report: Callable[[object, BaseException], None]
    _reads: FileReads | None = None   # made on the first read
    call_soon: Callable[..., Any]
    sendfile: Callable[..., None]

    def _path_op(self, path: bytes | None, handler, on_complete=None) -> Op:
        # An op whose CQE's res is the whole answer; it holds the path (""
        # for None: an operation on an fd, AT_EMPTY_PATH).
        self._check_open()
        buf = _EMPTY_PATH if path is None else checked_path(path) + b"\0"
        op = self._ops.add(OpKind.FILE, -1, handler, on_complete or self._on_file_result)
        op.buf = buf
        op.pin = pin(op.buf)
        op.state = path
        return op

    def _on_file_result(self, op: Op, res: int, flags: int) -> None:
        # state: the path, or a tuple led by it (with what else is held)
        path = op.state[0] if isinstance(op.state, tuple) else op.state
        handler = self._ops.pop(op)
        handler(res if res >= 0 else file_error(os_error(-res), path))

    def file_open(self, path: bytes, flags: int, mode: int, handler) -> None:
        op = self._path_op(path, handler)
        self._submit(self._ring.prep_openat(_AT_FDCWD, op.pin, flags | os.O_CLOEXEC, mode, op.id))

    def file_read(self, fd: int, buf, offset: int, handler) -> None:
        self._check_open()
        if not self._file_reads().read(fd, buf, offset, handler):
            self.call_soon(handler, 0)   # an empty buffer: nothing to read

    def file_reads(self, loop) -> FileReads:
        """The reads as futures of the asyncio ``loop`` over this one:
        ``future(fd, buf, offset)``, one C call that makes the future and
        prepares the SQE (None when ``loop`` is not running in this thread,
        or another loop was bound first)."""
        self._check_open()
        reads = self._file_reads()
        reads.bind(loop)
        return reads

    def _close_file_reads(self) -> None:
        # The loop is closing: reads in flight still hold their buffers until
        # their CQEs (the close waits for those too), but nobody hears of them.
        if self._reads is not None:
            self._reads.close()

    def _file_reads_inflight(self) -> int:
        return 0 if self._reads is None else self._reads.inflight

    def _file_reads(self) -> FileReads:
        # Made on first use (the mixin has no __init__ of its own): reads
        # are prepared and completed in C, the Dispatcher handing each CQE
        # tagged as a read to it (_build/_core/fastpath.c).
        reads = self._reads
        if reads is None:
            ring = self._ring
            reads = self._reads = FileReads(
                ring.memory, int(ffi.cast("uintptr_t", ring._ptr)),
                int(ffi.cast("uintptr_t", ffi.addressof(lib, "uio_prep_read"))),
                os_error, self._report)
        return reads

    def file_write(self, fd: int, data, offset: int, handler, sync: int = SYNC_NONE) -> None:
        self._check_open()
        if not len(data) and sync == SYNC_NONE:
            self.call_soon(handler, 0)
            return
        if not len(data):
            self.file_sync(fd, sync == SYNC_DATA, handler)
            return
        op = self._ops.add(OpKind.FILE_WRITE, fd, handler, self._on_file_write)
        op.buf = data if data.__class__ is bytes else bytes(data)
        op.pin = pin(op.buf)
        op.state = _Write(offset, sync)
        self._write_more(op)

    def _write_more(self, op: Op) -> None:
        st = cast(_Write, op.state)
        left = len(op.buf) - op.done
        where = _AT_POSITION if st.offset < 0 else st.offset + op.done
        if st.sync == SYNC_NONE:
            self._submit(self._ring.prep_write(op.fd, op.pin + op.done, left, where, op.id, 0))
            return
        sync_op = self._ops.add(OpKind.FILE_SYNC, op.fd, None, self._on_linked_sync)
        sync_op.state = op
        st.sync_op = sync_op
        self._submit(self._ring.prep_write(op.fd, op.pin + op.done, left, where, op.id,
                                           IOSQE_IO_LINK))
        self._submit(self._ring.prep_fsync(op.fd, _FSYNC_DATASYNC if st.sync == SYNC_DATA
                                           else 0, sync_op.id, 0))

    def _on_file_write(self, op: Op, res: int, flags: int) -> None:
        st = cast(_Write, op.state)
        if res > 0:
            op.done += res
            if op.done < len(op.buf):
                # Short: a linked fsync is cancelled by the kernel (its CQE
                # is ignored below); the rest goes out with a new one.
                if st.sync_op is not None:
                    st.sync_op.state = None
                self._write_more(op)
                return
        # (res 0 with bytes left: the file takes nothing more, which must
        # not look like a whole write)
        result: Any = op.done if res > 0 else os_error(-res if res else errno.EIO)
        if st.sync_op is not None:
            if res > 0:
                st.result = result   # reported when the fsync is done
                return
            st.sync_op.state = None   # the failed write's fsync is cancelled
        self._ops.pop(op)(result)

    def _on_linked_sync(self, sync_op: Op, res: int, flags: int) -> None:
        op = cast("Op | None", sync_op.state)
        self._ops.pop(sync_op)
        if op is None:
            return   # a link broken by a short or failed write
        st = cast(_Write, op.state)
        handler = self._ops.pop(op)
        handler(st.result if res >= 0 else os_error(-res))

    def file_sync(self, fd: int, datasync: bool, handler) -> None:
        self._check_open()
        op = self._ops.add(OpKind.FILE, fd, handler, self._on_file_result)
        self._submit(self._ring.prep_fsync(fd, _FSYNC_DATASYNC if datasync else 0, op.id, 0))

    def file_stat(self, path: bytes | None, fd: int, follow: bool, handler) -> None:
        op = self._path_op(path, handler, self._on_statx)
        if path is None:
            dfd, flags = fd, _AT_EMPTY_PATH
        else:
            dfd, flags = _AT_FDCWD, 0 if follow else _AT_SYMLINK_NOFOLLOW
        record = ffi.new("struct statx *")   # the kernel's to fill until the CQE
        op.state = (op.state, record)
        self._submit(self._ring.prep_statx(dfd, op.pin, flags, _STATX_BASIC_STATS, record,
                                           op.id))

    def _on_statx(self, op: Op, res: int, flags: int) -> None:
        path, x = cast(tuple, op.state)
        handler = self._ops.pop(op)
        if res < 0:
            handler(file_error(os_error(-res), path))
            return
        assert x is not None
        handler(stat_result(
            x.stx_mode, x.stx_ino, os.makedev(x.stx_dev_major, x.stx_dev_minor), x.stx_nlink,
            x.stx_uid, x.stx_gid, x.stx_size,
            tuple(t.tv_sec * 1_000_000_000 + t.tv_nsec
                  for t in (x.stx_atime, x.stx_mtime, x.stx_ctime)),
            x.stx_blksize, x.stx_blocks, os.makedev(x.stx_rdev_major, x.stx_rdev_minor)))

    def file_allocate(self, fd: int, offset: int, length: int, handler) -> None:
        self._check_open()
        op = self._ops.add(OpKind.FILE, fd, handler, self._on_file_result)
        self._submit(self._ring.prep_fallocate(fd, 0, offset, length, op.id))

    def file_copy(self, src_fd: int, dst_fd: int, offset: int, count: int, handler) -> None:
        # The proactor's sendfile: splice file -> pipe -> dst, in the kernel.
        self.sendfile(dst_fd, src_fd, offset, count, handler)

    def path_unlink(self, path: bytes, directory: bool, handler) -> None:
        op = self._path_op(path, handler)
        self._submit(self._ring.prep_unlinkat(_AT_FDCWD, op.pin,
                                              _AT_REMOVEDIR if directory else 0, op.id))

    def path_rename(self, old: bytes, new: bytes, handler) -> None:
        target = checked_path(new) + b"\0"
        op = self._path_op(old, handler)
        target_pin = pin(target)
        op.state = (old, target, target_pin)   # held, as the first path is
        self._submit(self._ring.prep_renameat(_AT_FDCWD, op.pin, _AT_FDCWD, target_pin, 0,
                                              op.id))

    def path_mkdir(self, path: bytes, mode: int, handler) -> None:
        op = self._path_op(path, handler)
        self._submit(self._ring.prep_mkdirat(_AT_FDCWD, op.pin, mode, op.id))
