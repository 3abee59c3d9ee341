"""File operations on the engine's interface, and why the two backends
differ here more than anywhere.

A regular file is always "ready": epoll refuses to watch one (EPERM), and
poll/select report it readable and writable at once, even when the read
will wait for a disk. Readiness says nothing about files, so a
readiness-based loop cannot wait for file IO; it can only hand each call
to a thread (``epoll/files.py``). io_uring reads and writes files
asynchronously, many in flight from one thread: there, each operation is
one SQE (``uring/files.py``).

What both halves share is here: the ``sync`` flags of ``file_write``, paths
checked and results made as the os module makes them.
"""

from __future__ import annotations

import os
from typing import Any

# Where the flags of file_write's ``sync`` say what follows the write.
SYNC_NONE, SYNC_DATA, SYNC_ALL = 0, 1, 2


def checked_path(path: Any) -> bytes:
    """``path`` as bytes for a system call; ValueError, as os's functions
    raise, for a NUL in it: the kernel reads a path only up to its first
    NUL, and "report.txt\\0.jpg" would be "report.txt"."""
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    return encoded


def file_error(exc: OSError, path: Any = None) -> OSError:
    """``exc`` with the path named as open() names it (a str)."""
    if path is None:
        path = exc.filename
    if path is not None and not isinstance(exc.filename, str):
        return OSError(exc.errno, exc.strerror, os.fsdecode(path))
    return exc


def stat_result(mode: int, ino: int, dev: int, nlink: int, uid: int, gid: int, size: int,
                times_ns: tuple[int, int, int], blksize: int, blocks: int,
                rdev: int) -> os.stat_result:
    """An ``os.stat_result`` as os.stat() makes it, from statx(2)'s fields."""
    parts = [divmod(t, 1_000_000_000) for t in times_ns]
    seconds = [sec for sec, _ in parts]
    # The float times as os.stat() computes them (seconds + nanoseconds *
    # 1e-9), not t / 1e9, which differs from it in the last bit about half
    # the time: a file's st_mtime then compares equal to os.stat()'s.
    floats = [sec + nsec * 1e-9 for sec, nsec in parts]
    return os.stat_result((mode, ino, dev, nlink, uid, gid, size, *seconds, *floats,
                           *times_ns, blksize, blocks, rdev))
