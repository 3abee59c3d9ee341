"""Files for async code, on the engine's file operations: the file
objects and functions of ``uringio.aio.files`` (asyncio) and
``uringio.trio.files`` (trio), the same code under either.

    async with uringio.open_file("data.bin", "rb") as f:
        header = await f.pread(64, 0)
        async for line in f: ...

On io_uring each read or write is one operation in the kernel, many in
flight from the loop's thread, and nothing blocks the loop; on epoll they
run on the engine's worker pool (a regular file is always "ready", so
readiness cannot wait for one: ``uringio/_core/files.py``). How an
operation is awaited is the running library's ``Host``'s (the layer that
runs the loop registers one); anything else gets a clear RuntimeError.

Binary files keep their own position and read and write at explicit
offsets (pread/pwrite), except in append mode; a read-ahead buffer serves
``readline`` and iteration. Writes are not buffered: each is one
operation, and ``flush`` has nothing to do. Text files decode and encode
as ``open()`` does (encoding, errors, newline), on top.
"""

from __future__ import annotations

import codecs
import io
import locale
import os
import stat as stat_module
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, AnyStr, Generic, Protocol, Self

from .files import SYNC_ALL, SYNC_DATA

# Read-ahead for readline and iteration, and the chunk of an unbounded read.
CHUNK = 64 * 1024


class Host(Protocol):
    """What an async library's layer gives the file API: whether it is
    running in this thread, and how it awaits an engine operation."""

    def running(self) -> bool:
        """True inside a task of this library, on a uringio loop or not."""
        ...

    def call(self, method: str, *args: Any, **options: Any) -> Awaitable[Any]:
        """Start the running loop's core operation ``method`` (``args``,
        the handler, then ``options``): an awaitable of its result."""
        ...

    def reads(self) -> Callable[[int, Any, int], Awaitable[int] | None]:
        """A file read's quicker path, or one that always says None."""
        ...

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """``fn(*args)`` in a worker thread (what has no operation)."""
        ...


HOSTS: list[Host] = []   # registered by uringio.trio (first) and uringio.aio


def host() -> Host:
    """The running library's Host; RuntimeError when none runs here."""
    for candidate in HOSTS:
        if candidate.running():
            return candidate
    raise RuntimeError("uringio's file API runs in a task of uringio.run (asyncio) or "
                       "uringio.trio.run (trio)")


def _core_call(method: str, *args: Any, **options: Any) -> Awaitable[Any]:
    return host().call(method, *args, **options)


def no_reads(fd: int, buf: Any, offset: int) -> None:
    return None


def _path(path: Any) -> bytes:
    return os.fsencode(path)


def _flags(mode: str) -> tuple[int, bool, bool, bool]:
    """open()'s mode -> (os.open flags, readable, writable, binary)."""
    kinds = set(mode)
    if len(kinds) != len(mode) or not kinds <= set("rwaxbt+") or len(kinds & set("rwax")) != 1 \
            or {"b", "t"} <= kinds:
        raise ValueError(f"invalid mode: {mode!r}")
    plus = "+" in kinds
    if "r" in kinds:
        flags, readable, writable = os.O_RDONLY, True, plus
    elif "w" in kinds:
        flags, readable, writable = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, plus, True
    elif "a" in kinds:
        flags, readable, writable = os.O_WRONLY | os.O_CREAT | os.O_APPEND, plus, True
    else:
        flags, readable, writable = os.O_WRONLY | os.O_CREAT | os.O_EXCL, plus, True
    if plus:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    return flags, readable, writable, "b" in kinds


class _Lines(Generic[AnyStr]):
    """What both kinds of file do alike: lines (from their ``readline``),
    and ``async with`` (their ``close``)."""

    async def readline(self, size: int = -1) -> AnyStr:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def readlines(self) -> list[AnyStr]:
        return [line async for line in self]

    def __aiter__(self) -> AsyncIterator[AnyStr]:
        return self

    async def __anext__(self) -> AnyStr:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncFile(_Lines[bytes]):
    """A binary file: ``read``, ``readline``, ``write``, ``pread``,
    ``pwrite``, ``seek``, ``tell``, ... all awaited (``open_file``)."""

    def __init__(self, fd: int, name: str, mode: str, readable: bool, writable: bool,
                 append: bool,
                 read: Callable[[int, Any, int], Awaitable[int] | None] = no_reads) -> None:
        self._fd = fd
        self._read = read   # (fd, buf, offset) -> an awaitable of the read, or None
        self.name = name
        self.mode = mode
        self._readable, self._writable, self._append = readable, writable, append
        self._pos = 0
        self._ahead = b""   # read ahead of _pos (readline)
        self._closed = False

    def __repr__(self) -> str:
        return f"<uringio AsyncFile name={self.name!r} mode={self.mode!r} closed={self._closed}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        self._check(None)
        return self._fd

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def _check(self, need: str | None) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if need == "r" and not self._readable:
            raise io.UnsupportedOperation("not readable")
        if need == "w" and not self._writable:
            raise io.UnsupportedOperation("not writable")

    # -- at an offset ----------------------------------------------------------

    async def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer only at the end of the
        file); the file's position does not move."""
        buf = bytearray(n)
        got = await self._read_into(buf, offset)
        return bytes(buf) if got == n else bytes(memoryview(buf)[:got])

    async def preadinto(self, buf, offset: int) -> int:
        """Read into ``buf`` (which the operation holds until it completes,
        also if this call is cancelled) from ``offset``: the count of bytes,
        fewer than the buffer holds only at the end of the file."""
        return await self._read_into(buf, offset)

    def _read_into(self, buf, offset: int) -> Awaitable[int]:
        # The read of pread and preadinto. On uring under asyncio, one C call
        # makes the future and prepares the SQE, and the CQE sets the
        # future's result in C; None from it: not on the loop the file was
        # opened on (or on epoll, or trio), the general path.
        if self._closed or not self._readable:
            self._check("r")
        fut = self._read(self._fd, buf, offset)
        return fut if fut is not None else _core_call("file_read", self._fd, buf, offset)

    async def pwrite(self, data, offset: int) -> int:
        """Write all of ``data`` at ``offset``; the position does not move."""
        self._check("w")
        return await _core_call("file_write", self._fd, data, offset)

    # -- at the position ---------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n`` < 0) from the
        position, which moves past them."""
        self._check("r")
        if n is None or n < 0:
            parts = [self._ahead]
            self._pos += len(self._ahead)
            self._ahead = b""
            size = (await stat_fd(self._fd)).st_size
            while True:
                chunk = await self.pread(max(size - self._pos, CHUNK), self._pos)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
                self._pos += len(chunk)
        if n <= len(self._ahead):
            data, self._ahead = self._ahead[:n], self._ahead[n:]
        else:
            data = self._ahead + await self.pread(n - len(self._ahead),
                                                  self._pos + len(self._ahead))
            self._ahead = b""
        self._pos += len(data)
        return data

    async def readline(self, size: int = -1) -> bytes:
        """The next line, with its ``b"\\n"`` (b"" at the end of the file)."""
        self._check("r")
        while True:
            end = self._ahead.find(b"\n")
            if end >= 0 or (0 <= size <= len(self._ahead)):
                cut = end + 1 if end >= 0 else len(self._ahead)
                if 0 <= size < cut:
                    cut = size
                break
            more = await self.pread(CHUNK, self._pos + len(self._ahead))
            if not more:
                cut = len(self._ahead)
                break
            self._ahead += more
        line, self._ahead = self._ahead[:cut], self._ahead[cut:]
        self._pos += len(line)
        return line

    async def write(self, data) -> int:
        """Write all of ``data`` at the position (at the end in append
        mode), which moves past it."""
        self._check("w")
        n = len(memoryview(data).cast("B"))
        if self._append:
            await _core_call("file_write", self._fd, data, -1)
            self._pos = (await stat_fd(self._fd)).st_size
        else:
            await _core_call("file_write", self._fd, data, self._pos)
            self._pos += n
        self._ahead = b""
        return n

    async def writelines(self, lines) -> None:
        await self.write(b"".join(lines))

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check(None)
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = (await stat_fd(self._fd)).st_size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise OSError(22, "Invalid argument")   # as os.lseek
        self._pos, self._ahead = pos, b""
        return pos

    async def tell(self) -> int:
        self._check(None)
        return self._pos

    async def truncate(self, size: int | None = None) -> int:
        """Cut (or extend) the file to ``size`` (default: the position)."""
        self._check("w")
        size = self._pos if size is None else size
        await host().in_thread(os.ftruncate, self._fd, size)
        self._ahead = b""
        return size

    async def flush(self) -> None:
        """Nothing is buffered: each write is its own operation."""
        self._check(None)

    async def fsync(self, datasync: bool = False) -> None:
        """fsync(2) (fdatasync(2) with ``datasync``): on disk when it returns."""
        self._check(None)
        await _core_call("file_sync", self._fd, datasync)

    async def write_synced(self, data, offset: int, datasync: bool = False) -> int:
        """pwrite, then fsync (or fdatasync), linked in the kernel on uring:
        returns once the bytes are on disk."""
        self._check("w")
        return await _core_call("file_write", self._fd, data, offset,
                                sync=SYNC_DATA if datasync else SYNC_ALL)

    async def stat(self) -> os.stat_result:
        self._check(None)
        return await stat_fd(self._fd)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _core_call("close_fd", self._fd)


class AsyncTextFile(_Lines[str]):
    """A text file on an AsyncFile: ``open()``'s encoding, errors and
    newline rules. ``seek`` takes 0 (or 0 from the end) and ``tell`` is not
    offered: a text position is an opaque cookie in ``open()`` too."""

    def __init__(self, raw: AsyncFile, encoding: str | None, errors: str | None,
                 newline: str | None) -> None:
        if newline not in (None, "", "\n", "\r", "\r\n"):
            raise ValueError(f"illegal newline value: {newline!r}")
        self.buffer = raw
        self.encoding = encoding or locale.getpreferredencoding(False)
        self.errors = errors or "strict"
        self.newlines = newline
        self._newline = newline
        self._encoder = codecs.getincrementalencoder(self.encoding)(self.errors)
        self._reset_decoder()

    def _reset_decoder(self) -> None:
        decoder: Any = codecs.getincrementaldecoder(self.encoding)(self.errors)
        if self._newline is None or self._newline == "":
            # Universal newlines: \r and \r\n become \n (newline=None), or
            # are only recognised (newline=""), also across two reads.
            decoder = io.IncrementalNewlineDecoder(decoder, translate=self._newline is None)
        self._decoder: Any = decoder
        self._text = ""
        self._eof = False

    @property
    def name(self) -> str:
        return self.buffer.name

    @property
    def closed(self) -> bool:
        return self.buffer.closed

    def __repr__(self) -> str:
        return (f"<uringio AsyncTextFile name={self.name!r} mode={self.buffer.mode!r} "
                f"encoding={self.encoding!r}>")

    async def _fill(self) -> bool:
        # More decoded text; False at the end of the file.
        if self._eof:
            return False
        raw = await self.buffer.read(CHUNK)
        self._eof = not raw
        self._text += self._decoder.decode(raw, final=self._eof)
        return bool(raw) or bool(self._text)

    async def read(self, n: int = -1) -> str:
        self.buffer._check("r")
        while (n is None or n < 0 or len(self._text) < n) and await self._fill():
            pass
        if n is None or n < 0:
            text, self._text = self._text, ""
        else:
            text, self._text = self._text[:n], self._text[n:]
        return text

    def _line_end(self) -> int:
        # Where the first complete line ends in the decoded text, or -1.
        text = self._text
        if self._newline is None or self._newline == "\n":
            return text.find("\n") + 1 or -1
        if self._newline == "":
            for i, ch in enumerate(text):
                if ch == "\n":
                    return i + 1
                if ch == "\r":
                    if i + 1 < len(text):
                        return i + 2 if text[i + 1] == "\n" else i + 1
                    return i + 1 if self._eof else -1   # a \n may follow
            return -1
        end = text.find(self._newline)
        return end + len(self._newline) if end >= 0 else -1

    async def readline(self, size: int = -1) -> str:
        self.buffer._check("r")
        while True:
            end = self._line_end()
            if end > 0 or not await self._fill():
                break
        if end <= 0:
            end = len(self._text)
        if 0 <= size < end:
            end = size
        line, self._text = self._text[:end], self._text[end:]
        return line

    async def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        out = text
        if self._newline not in (None, "", "\n"):
            out = out.replace("\n", self._newline)
        elif self._newline is None and os.linesep != "\n":
            out = out.replace("\n", os.linesep)
        await self.buffer.write(self._encoder.encode(out))
        return len(text)

    async def writelines(self, lines) -> None:
        await self.write("".join(lines))

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if offset != 0:
            raise io.UnsupportedOperation("can only seek to the start or the end of a text file")
        pos = await self.buffer.seek(0, whence)
        self._reset_decoder()
        return pos

    async def flush(self) -> None:
        await self.buffer.flush()

    async def close(self) -> None:
        await self.buffer.close()


class _Opening:
    """What ``open_file`` returns: await it, or use it with ``async with``."""

    def __init__(self, *args: Any) -> None:
        self._args = args
        self._file: AsyncFile | AsyncTextFile | None = None

    def __await__(self):
        return _open(*self._args).__await__()

    async def __aenter__(self):
        self._file = await _open(*self._args)
        return self._file

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._file is not None
        await self._file.close()


def open_file(path, mode: str = "r", buffering: int = -1, encoding: str | None = None,
              errors: str | None = None, newline: str | None = None, *, flags: int = 0) -> Any:
    """Open ``path`` as ``open()`` would (same modes, same errors: a
    missing file is FileNotFoundError, a directory IsADirectoryError), for
    awaiting: ``f = await open_file(...)`` or ``async with open_file(...) as f``.
    ``buffering`` is accepted for open()'s signature; writes are never
    buffered. ``flags`` are more ``os.open`` flags, such as ``os.O_DIRECT``
    (then read into aligned buffers, such as an ``mmap``'s, with
    ``preadinto``)."""
    mode_flags, readable, writable, binary = _flags(mode)
    flags |= mode_flags
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
    return _Opening(path, mode, flags, readable, writable, binary, encoding, errors, newline)


async def _open(path, mode, flags, readable, writable, binary, encoding, errors, newline):
    fd = await _core_call("file_open", _path(path), flags, 0o666)
    try:
        st = await stat_fd(fd)
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", os.fsdecode(path))
    except BaseException:
        os.close(fd)
        raise
    raw = AsyncFile(fd, os.fsdecode(path), mode, readable, writable, "a" in mode,
                    host().reads())
    if "a" in mode:
        raw._pos = st.st_size
    return raw if binary else AsyncTextFile(raw, encoding, errors, newline)


# -- helpers ---------------------------------------------------------------


async def stat_fd(fd: int) -> os.stat_result:
    return await _core_call("file_stat", None, fd, True)


async def stat(path, *, follow_symlinks: bool = True) -> os.stat_result:
    """os.stat, awaited."""
    return await _core_call("file_stat", _path(path), -1, follow_symlinks)


async def remove(path) -> None:
    """os.remove, awaited."""
    await _core_call("path_unlink", _path(path), False)


async def rmdir(path) -> None:
    await _core_call("path_unlink", _path(path), True)


async def rename(old, new) -> None:
    await _core_call("path_rename", _path(old), _path(new))


async def mkdir(path, mode: int = 0o777) -> None:
    await _core_call("path_mkdir", _path(path), mode)


async def read_bytes(path) -> bytes:
    async with open_file(path, "rb") as f:
        return await f.read()


async def write_bytes(path, data) -> int:
    async with open_file(path, "wb") as f:
        return await f.write(data)


async def copy(src, dst) -> int:
    """Copy file ``src`` to ``dst`` (made or truncated), its bytes moved
    by the kernel, not through Python: the count."""
    async with open_file(src, "rb") as fin, open_file(dst, "wb") as fout:
        size = (await fin.stat()).st_size
        if not size:
            return 0
        return await _core_call("file_copy", fin.fileno(), fout.fileno(), 0, size)


API = ["AsyncFile", "AsyncTextFile", "copy", "mkdir", "open_file", "read_bytes", "remove",
       "rename", "rmdir", "stat", "write_bytes"]
