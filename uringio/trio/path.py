"""``uringio.trio.Path``: trio's async ``Path``, with the methods the
engine has file operations for run as operations of the run's loop
instead of in a worker thread each:

    path = uringio.trio.Path("data") / "log.txt"
    await path.write_text("one line\\n")
    if await path.exists():
        async with await path.open("rb") as f: ...

``open`` (``uringio.trio.open_file``), ``stat``, ``lstat``, ``exists``,
``is_file``, ``is_dir``, ``read_bytes``, ``read_text``, ``write_bytes``,
``write_text``, ``unlink``, ``rmdir``, ``rename``, ``replace`` and
``mkdir`` (``parents``, ``exist_ok`` too) are on the engine, with
pathlib's results and pathlib's errors; every other method is trio's own,
in a thread. A path made from one (``path / "x"``, ``.parent``,
``rename``'s result) is a ``uringio.trio.Path`` again. Under
``uringio.trio.run`` only, as ``open_file``.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat as stat_module
from typing import Any, ClassVar

import trio

from .._core import file_api

# The errors pathlib's exists() and is_*() read as "no" (pathlib._IGNORED_ERRNOS):
# the path, or a directory on the way to it, is not there.
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP}


class Path(trio.Path, pathlib.PurePosixPath):
    """An async ``pathlib.Path`` on uringio's file operations (module doc)."""

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]] = pathlib.PosixPath

    def __repr__(self) -> str:
        return f"uringio.trio.Path({str(self)!r})"

    async def open(self, mode: str = "r", buffering: int = -1,
                   encoding: str | None = None, errors: str | None = None,
                   newline: str | None = None) -> Any:
        """Open the file as ``uringio.trio.open_file`` does."""
        return await file_api.open_file(self, mode, buffering, encoding, errors, newline)

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return await file_api.stat(self, follow_symlinks=follow_symlinks)

    async def lstat(self) -> os.stat_result:
        return await file_api.stat(self, follow_symlinks=False)

    async def _mode(self) -> int | None:
        """The file's st_mode, or None where pathlib would say it is not there."""
        try:
            return (await self.stat()).st_mode
        except OSError as exc:
            if exc.errno not in _ABSENT:
                raise
        except ValueError:   # (a NUL in the path, as pathlib)
            pass
        return None

    async def exists(self) -> bool:
        return await self._mode() is not None

    async def is_file(self) -> bool:
        mode = await self._mode()
        return mode is not None and stat_module.S_ISREG(mode)

    async def is_dir(self) -> bool:
        mode = await self._mode()
        return mode is not None and stat_module.S_ISDIR(mode)

    async def read_bytes(self) -> bytes:
        return await file_api.read_bytes(self)

    async def write_bytes(self, data) -> int:
        view = memoryview(data)   # (pathlib's TypeError for what is not bytes-like)
        return await file_api.write_bytes(self, view)

    async def read_text(self, encoding: str | None = None,
                        errors: str | None = None) -> str:
        async with file_api.open_file(self, "r", encoding=encoding, errors=errors) as f:
            return await f.read()

    async def write_text(self, data: str, encoding: str | None = None,
                         errors: str | None = None, newline: str | None = None) -> int:
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        async with file_api.open_file(self, "w", encoding=encoding, errors=errors,
                                      newline=newline) as f:
            return await f.write(data)

    async def unlink(self, missing_ok: bool = False) -> None:
        try:
            await file_api.remove(self)
        except FileNotFoundError:
            if not missing_ok:
                raise

    async def rmdir(self) -> None:
        await file_api.rmdir(self)

    async def rename(self, target) -> Path:
        """Rename to ``target`` (replacing a file there, as rename(2)); the
        new path, as pathlib (relative to the working directory, not to
        this path's)."""
        await file_api.rename(self, target)
        return type(self)(target)

    replace = rename   # (on POSIX both are rename(2))

    async def mkdir(self, mode: int = 0o777, parents: bool = False,
                    exist_ok: bool = False) -> None:
        # pathlib's own steps, each on the engine.
        try:
            await file_api.mkdir(self, mode)
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            await self.parent.mkdir(parents=True, exist_ok=True)
            await self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            # (a file there, or a race: exist_ok holds for a directory only)
            if not exist_ok or not await self.is_dir():
                raise
