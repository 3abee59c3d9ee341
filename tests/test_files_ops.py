"""The file API's writes, syncs and stats on both backends
(``uringio.files``): write_bytes, stat_fd, and truncate, fsync,
write_synced and stat on an open file, each checked against os.stat and
the file's bytes read back with plain ``open()``."""

from __future__ import annotations

import asyncio
import io
import os
import stat as stat_module

import pytest

import uringio
from uringio import files

STAT_FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
               "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
               "st_blksize", "st_blocks", "st_rdev")


def run(backend: str, coro_fn, timeout: float = 60.0):
    async def bounded():
        return await asyncio.wait_for(coro_fn(), timeout)
    return uringio.run(bounded(), backend=backend)


def fields(st: os.stat_result) -> dict:
    return {name: getattr(st, name) for name in STAT_FIELDS}


@pytest.fixture
def syncs(backend, monkeypatch):
    """The fsyncs the loop asks of the kernel, as ("fsync" or "fdatasync",
    fd): wrapped where each backend makes them (the ring's prep_fsync on
    uring, os.fsync/os.fdatasync on the epoll loop's file workers)."""
    seen: list[tuple[str, int]] = []
    if backend == "epoll":
        for name in ("fsync", "fdatasync"):
            real = getattr(os, name)

            def spy(fd, name=name, real=real):
                real(fd)
                seen.append((name, fd))
            monkeypatch.setattr(os, name, spy)
        return seen

    from uringio._core.uring import ring

    datasync = ring.lib.IORING_FSYNC_DATASYNC
    real_init = ring.Ring.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        real_prep = self.prep_fsync

        def prep_fsync(fd, flags, *rest):
            seen.append(("fdatasync" if flags & datasync else "fsync", fd))
            return real_prep(fd, flags, *rest)
        self.prep_fsync = prep_fsync
    monkeypatch.setattr(ring.Ring, "__init__", init)
    return seen


# -- write_bytes -----------------------------------------------------------------------


def test_write_bytes_makes_or_replaces_the_file_and_counts(backend, tmp_path):
    path = tmp_path / "data.bin"
    big = os.urandom((3 << 20) + 7)

    async def main():
        assert await files.write_bytes(path, big) == len(big)
        assert path.read_bytes() == big
        # A file there already is replaced whole, not overwritten in front.
        assert await files.write_bytes(str(path), b"short") == 5
        assert path.read_bytes() == b"short" and os.stat(path).st_size == 5
        assert await files.write_bytes(os.fsencode(path), bytearray(b"from a bytearray")) == 16
        assert path.read_bytes() == b"from a bytearray"
        view = memoryview(b"0123456789")[2:7]
        assert await files.write_bytes(path, view) == 5
        assert path.read_bytes() == b"23456"
        assert await files.write_bytes(path, b"") == 0
        assert path.read_bytes() == b"" and path.exists()
        with pytest.raises(FileNotFoundError):
            await files.write_bytes(tmp_path / "no" / "such.bin", b"x")
        with pytest.raises(IsADirectoryError):
            await files.write_bytes(tmp_path, b"x")

    run(backend, main)


# -- stat_fd and stat on an open file ------------------------------------------------


def test_stat_fd_is_os_fstat(backend, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(12345))
    os.link(path, tmp_path / "link.bin")
    # Times os.stat turns into floats in its own way: before 1970, and
    # nanoseconds that are not a whole float.
    os.utime(path, ns=(-1_500_000_001, 1_234_567_891_987_654_321))

    async def main():
        fd = os.open(path, os.O_RDONLY)
        dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        read_end, write_end = os.pipe()
        try:
            for each in (fd, dir_fd, read_end):
                assert fields(await files.stat_fd(each)) == fields(os.fstat(each))
            st = await files.stat_fd(fd)
            assert st.st_size == 12345 and st.st_nlink == 2 and stat_module.S_ISREG(st.st_mode)
            assert st.st_atime_ns == -1_500_000_001
            assert st.st_mtime_ns == 1_234_567_891_987_654_321
            assert stat_module.S_ISDIR((await files.stat_fd(dir_fd)).st_mode)
            assert stat_module.S_ISFIFO((await files.stat_fd(write_end)).st_mode)
        finally:
            for each in (fd, dir_fd, read_end, write_end):
                os.close(each)
        with pytest.raises(OSError) as raised:
            await files.stat_fd(fd)   # closed
        assert raised.value.errno == 9   # EBADF

    run(backend, main)


def test_stat_of_an_open_file_follows_the_file_not_its_path(backend, tmp_path):
    path = tmp_path / "data.bin"

    async def main():
        async with uringio.open_file(path, "w+b") as f:
            st = await f.stat()
            assert fields(st) == fields(os.stat(path)) and st.st_size == 0
            await f.write(os.urandom(100_000))
            st = await f.stat()
            assert st.st_size == 100_000 and fields(st) == fields(os.stat(path))
            assert st.st_blocks * 512 >= 100_000
            os.rename(path, tmp_path / "moved.bin")
            moved = await f.stat()
            assert fields(moved) == fields(os.stat(tmp_path / "moved.bin"))
            os.unlink(tmp_path / "moved.bin")
            gone = await f.stat()   # the file lives on while open, with no name
            assert gone.st_nlink == 0 and gone.st_ino == st.st_ino and gone.st_size == 100_000
        with pytest.raises(ValueError, match="closed file"):
            await f.stat()

    run(backend, main)


# -- truncate ------------------------------------------------------------------------


def test_truncate_cuts_extends_and_keeps_the_position(backend, tmp_path):
    path = tmp_path / "data.bin"
    lines = b"".join(b"line %03d\n" % i for i in range(100))
    path.write_bytes(lines)

    async def main():
        async with uringio.open_file(path, "r+b") as f:
            assert await f.truncate(400) == 400
            assert os.stat(path).st_size == 400 and path.read_bytes() == lines[:400]
            assert (await f.stat()).st_size == 400
            # Without a size: at the position, which stays where it was.
            assert await f.readline() == b"line 000\n"   # (and more read ahead)
            assert await f.truncate() == 9
            assert await f.tell() == 9
            assert path.read_bytes() == b"line 000\n"
            assert await f.readline() == b""   # nothing read ahead outlives the cut
            # Past the end: the file grows, with zeros.
            assert await f.truncate(5000) == 5000
            assert os.stat(path).st_size == 5000
            assert path.read_bytes() == b"line 000\n" + bytes(5000 - 9)
            assert await f.read() == bytes(5000 - 9)
            assert await f.truncate(0) == 0 and os.stat(path).st_size == 0
        async with uringio.open_file(path, "wb") as f:
            await f.write(b"abcdef")
            assert await f.truncate() == 6 and await f.truncate(2) == 2   # write-only too
        assert path.read_bytes() == b"ab"
        async with uringio.open_file(path, "rb") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.truncate(0)
        assert path.read_bytes() == b"ab"
        with pytest.raises(ValueError, match="closed file"):
            await f.truncate(0)

    run(backend, main)


# -- fsync and write_synced ------------------------------------------------------------


def test_fsync_and_fdatasync_go_to_the_kernel(backend, tmp_path, syncs):
    path = tmp_path / "data.bin"
    data = os.urandom(200_000)

    async def main():
        async with uringio.open_file(path, "wb") as f:
            await f.write(data)
            assert syncs == []
            assert await f.fsync() is None
            assert syncs == [("fsync", f.fileno())]
            assert await f.fsync(datasync=True) is None
            assert syncs == [("fsync", f.fileno()), ("fdatasync", f.fileno())]
            assert os.stat(path).st_size == len(data)
        assert path.read_bytes() == data
        async with uringio.open_file(path, "rb") as f:   # a read-only file syncs too
            await f.fsync()
            assert syncs[-1] == ("fsync", f.fileno())
        with pytest.raises(ValueError, match="closed file"):
            await f.fsync()
        assert len(syncs) == 3

    run(backend, main)


def test_a_failed_fsync_raises_its_oserror(backend, tmp_path):
    # The kernel's answer is the caller's: fsync on a pipe is EINVAL.
    read_end, write_end = os.pipe()

    async def main():
        f = files.AsyncFile(write_end, "pipe", "wb", False, True, False)
        with pytest.raises(OSError) as raised:
            await f.fsync()
        assert raised.value.errno == 22   # EINVAL
        with pytest.raises(OSError) as raised:
            await f.write_synced(b"x", -1)
        assert raised.value.errno == 22

    try:
        run(backend, main)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("datasync", [False, True], ids=["fsync", "fdatasync"])
def test_write_synced_writes_at_its_offset_then_syncs(backend, tmp_path, syncs, datasync):
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 100)
    sync = "fdatasync" if datasync else "fsync"

    async def main():
        async with uringio.open_file(path, "r+b") as f:
            fd = f.fileno()
            assert await f.read(10) == b"a" * 10
            assert await f.write_synced(b"XYZ", 50, datasync=datasync) == 3
            assert syncs == [(sync, fd)]
            assert path.read_bytes() == b"a" * 50 + b"XYZ" + b"a" * 47
            assert await f.tell() == 10   # an offset's write: the position stays
            assert await f.read(5) == b"a" * 5
            # Past the end: a hole of zeros, then the bytes.
            big = os.urandom(1 << 20)
            assert await f.write_synced(big, 200, datasync=datasync) == len(big)
            assert syncs == [(sync, fd)] * 2
            assert os.stat(path).st_size == 200 + len(big)
            whole = path.read_bytes()
            assert whole[100:200] == bytes(100) and whole[200:] == big
            # Nothing to write is still a sync.
            assert await f.write_synced(b"", 0, datasync=datasync) == 0
            assert syncs == [(sync, fd)] * 3
            assert (await f.stat()).st_size == 200 + len(big)
            assert await f.write_synced(bytearray(b"QQ"), 0, datasync=datasync) == 2
        assert path.read_bytes()[:3] == b"QQa"
        async with uringio.open_file(path, "rb") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.write_synced(b"no", 0)
        assert len(syncs) == 4 and path.read_bytes()[:3] == b"QQa"

    run(backend, main)
