"""Files on both backends: the engine's file operations (one SQE each on
uring, a worker pool on epoll) and the asyncio-facing API on them
(``uringio.open_file``, ``uringio.files``)."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import threading
import time
import weakref

import pytest

import uringio
from conftest import open_fds
from uringio._core import open_loop
from uringio._core.files import SYNC_ALL


def run(backend: str, coro_fn, timeout: float = 60.0):
    async def bounded():
        return await asyncio.wait_for(coro_fn(), timeout)
    return uringio.run(bounded(), backend=backend)


def core_call(loop, method: str, *args):
    """Run one core file operation to its result (bounded)."""
    box: list = []
    getattr(loop, method)(*args, box.append)
    assert loop.run_until(lambda: box, 10.0), f"{method} never completed"
    return box[0]


def test_every_byte_written_comes_back(backend, tmp_path):
    path = tmp_path / "data.bin"
    blobs = [os.urandom(n) for n in (1, 4095, 4096, 65537, 3 << 20)]

    async def main():
        async with uringio.open_file(path, "wb") as f:
            for blob in blobs:
                assert await f.write(blob) == len(blob)
            assert await f.tell() == sum(map(len, blobs))
        whole = b"".join(blobs)
        assert path.read_bytes() == whole
        async with uringio.open_file(path, "rb") as f:
            assert await f.read() == whole
            # at offsets, in any order, many in flight at once
            offsets = list(range(0, len(whole) - 4096, 65521))
            got = await asyncio.gather(*(f.pread(4096, off) for off in reversed(offsets)))
            assert got == [whole[off:off + 4096] for off in reversed(offsets)]
            assert await f.pread(10, len(whole) - 3) == whole[-3:]   # short only at the end
            await f.seek(-5, os.SEEK_END)
            assert await f.read(100) == whole[-5:] and await f.read(1) == b""
        async with uringio.open_file(path, "r+b") as f:
            await f.pwrite(b"XYZ", 10)
            assert await f.pread(3, 10) == b"XYZ"
        async with uringio.open_file(path, "ab") as f:
            await f.write(b"tail")
        assert path.read_bytes()[-4:] == b"tail" and path.read_bytes()[10:13] == b"XYZ"
        assert await uringio.files.read_bytes(path) == path.read_bytes()
        assert await uringio.files.copy(path, tmp_path / "copy.bin") == path.stat().st_size
        assert (tmp_path / "copy.bin").read_bytes() == path.read_bytes()

    run(backend, main)


@pytest.mark.parametrize("newline", [None, "", "\n", "\r\n"])
def test_text_files_follow_opens_rules(backend, tmp_path, newline):
    path = tmp_path / "text.txt"
    text = "één\ntwo\r\nthree\rfour\n" * 3000 + "last"   # lines across read chunks

    async def main():
        async with uringio.open_file(path, "w", encoding="utf-8", newline=newline) as f:
            await f.write(text)
        with open(path, encoding="utf-8", newline=newline) as f:
            expected = f.readlines()
        # The bytes the built-in open writes for the same text and newline:
        # "\n" written as "\r\n" for newline="\r\n", as it is otherwise (Linux).
        with open(tmp_path / "ref.txt", "w", encoding="utf-8", newline=newline) as ref:
            ref.write(text)
        assert path.read_bytes() == (tmp_path / "ref.txt").read_bytes()
        translated = text.replace("\n", "\r\n") if newline == "\r\n" else text
        assert path.read_bytes() == translated.encode("utf-8")
        async with uringio.open_file(path, encoding="utf-8", newline=newline) as f:
            assert [line async for line in f] == expected
        async with uringio.open_file(path, encoding="utf-8", newline=newline) as f:
            assert await f.read() == "".join(expected)

    run(backend, main)


def test_errors_are_the_types_open_and_os_raise(backend, tmp_path):
    (tmp_path / "sub").mkdir()
    missing = tmp_path / "missing"

    async def main():
        for path, mode in ((missing, "rb"), (tmp_path / "sub", "rb"), (tmp_path / "sub", "wb"),
                           (tmp_path / "no" / "dir", "wb")):
            with pytest.raises(OSError) as ours:
                await uringio.open_file(path, mode)
            with pytest.raises(OSError) as builtin:
                open(path, mode)
            assert type(ours.value) is type(builtin.value), (path, mode)
            assert ours.value.errno == builtin.value.errno
            assert ours.value.filename == builtin.value.filename
        # A full device: ENOSPC, an OSError as from a built-in file.
        async with uringio.open_file("/dev/full", "wb") as f:
            with pytest.raises(OSError) as full:
                await f.write(b"x" * 4096)
        assert full.value.errno == errno.ENOSPC
        async with uringio.open_file(tmp_path / "ro", "wb") as f:
            with pytest.raises(io_unsupported()):
                await f.read()
        with pytest.raises(FileNotFoundError):
            await uringio.files.stat(missing)
        with pytest.raises(FileNotFoundError):
            await uringio.files.remove(missing)
        await uringio.files.mkdir(tmp_path / "new")
        with pytest.raises(FileExistsError):
            await uringio.files.mkdir(tmp_path / "new")
        await uringio.files.rename(tmp_path / "new", tmp_path / "renamed")
        assert (await uringio.files.stat(tmp_path / "renamed")).st_mode == \
            os.stat(tmp_path / "renamed").st_mode
        await uringio.files.rmdir(tmp_path / "renamed")
        assert not (tmp_path / "renamed").exists()
        # A NUL in a path is os's ValueError, not the path cut short at it
        # ("file\0.jpg" would be "file").
        (tmp_path / "file").write_bytes(b"not this one")
        for call in (lambda: uringio.open_file(tmp_path / "file\0.jpg", "rb"),
                     lambda: uringio.files.stat(f"{tmp_path}/file\0"),
                     lambda: uringio.files.remove(b"%s/file\0x" % bytes(tmp_path)),
                     lambda: uringio.files.rename(tmp_path / "file\0", tmp_path / "moved")):
            with pytest.raises(ValueError, match="embedded null byte"):
                await call()
        assert (tmp_path / "file").read_bytes() == b"not this one"

    run(backend, main)


def io_unsupported():
    import io
    return io.UnsupportedOperation


def test_an_argument_os_refuses_is_its_error_and_the_operations_go_on(backend, tmp_path):
    # An offset past what os takes (OverflowError), on epoll raised in a
    # worker thread: the caller gets it, the worker lives -- more than
    # the pool's workers of them, and a read still completes after.
    (tmp_path / "f").write_bytes(b"data")
    loop = open_loop(backend)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        for _ in range(20):
            try:
                result = core_call(loop, "file_read", fd, bytearray(4), 2 ** 64)
            except OverflowError:   # (refused at once, before any operation)
                continue
            assert isinstance(result, OverflowError), result
        buf = bytearray(4)
        assert core_call(loop, "file_read", fd, buf, 0) == 4 and buf == b"data"
    finally:
        os.close(fd)
        loop.close()


def test_a_bad_fd_is_ebadf_as_from_os(backend):
    loop = open_loop(backend)
    try:
        r, w = os.pipe()
        os.close(r)
        os.close(w)   # both numbers are closed now
        with pytest.raises(OSError) as builtin:
            os.pread(r, 10, 0)
        result = core_call(loop, "file_read", r, bytearray(10), 0)
        assert isinstance(result, OSError) and result.errno == builtin.value.errno == errno.EBADF
        result = core_call(loop, "file_write", w, b"x", 0)
        assert isinstance(result, OSError) and result.errno == errno.EBADF
    finally:
        loop.close()


def test_short_reads_are_continued(backend):
    # A pipe hands a read what it has: the engine goes on until the buffer
    # is full (or the writer closes).
    loop = open_loop(backend)
    r, w = os.pipe()
    pieces = [os.urandom(1000) for _ in range(8)]

    def writer():
        for piece in pieces:
            os.write(w, piece)
            time.sleep(0.01)
        os.close(w)

    try:
        thread = threading.Thread(target=writer)
        thread.start()
        buf = bytearray(5000)
        assert core_call(loop, "file_read", r, buf, -1) == 5000
        assert bytes(buf) == b"".join(pieces)[:5000]
        rest = bytearray(5000)
        assert core_call(loop, "file_read", r, rest, -1) == 3000   # then end of file
        assert bytes(rest[:3000]) == b"".join(pieces)[5000:]
        thread.join()
    finally:
        os.close(r)
        loop.close()


def test_a_synced_write_is_reported_after_its_fsync(backend, tmp_path, monkeypatch):
    # write then fsync, linked on uring: the caller hears once the fsync
    # completed, never between the two.
    events: list[str] = []
    loop = open_loop(backend)
    if backend == "uring":
        real = type(loop)._on_linked_sync

        def on_sync(self, op, res, flags):
            events.append(f"fsync {res}")
            real(self, op, res, flags)
        monkeypatch.setattr(type(loop), "_on_linked_sync", on_sync)
    else:
        real_fsync = os.fsync

        def fsync(fd):
            real_fsync(fd)
            events.append("fsync 0")
        monkeypatch.setattr(os, "fsync", fsync)
    try:
        fd = os.open(tmp_path / "synced", os.O_RDWR | os.O_CREAT, 0o644)
        box: list = []
        loop.file_write(fd, b"x" * (1 << 20), 0, lambda res: (events.append("reported"),
                                                              box.append(res)), SYNC_ALL)
        assert loop.run_until(lambda: box, 10.0)
        assert box == [1 << 20] and events == ["fsync 0", "reported"]
        os.close(fd)
    finally:
        loop.close()


def test_a_cancelled_read_keeps_its_buffer_until_it_completes(backend):
    class Buffer(bytearray):
        pass   # a bytearray one can hold a weak reference to

    async def main():
        r, w = os.pipe()
        async with uringio.open_file(f"/proc/self/fd/{r}", "rb") as f:
            buf = Buffer(100)
            held = weakref.ref(buf)
            task = asyncio.ensure_future(f.preadinto(buf, -1))
            await asyncio.sleep(0.05)   # the read waits for the pipe
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del buf
            gc.collect()
            assert held() is not None, "the read in flight let go of its buffer"
            os.write(w, b"late")   # now it completes (short reads go on to the
            os.close(w)            # end of the file), into the buffer it kept
            deadline = time.monotonic() + 30   # bounds a hang only
            while held() is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                gc.collect()
            assert held() is None, "the completed read still holds its buffer"
        os.close(r)

    run(backend, main)


def test_ten_thousand_files_opened_and_closed_leave_no_fd(backend, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")

    async def main():
        before = open_fds()
        for _ in range(10_000):
            f = await uringio.open_file(path, "rb")
            await f.close()
        assert open_fds() == before

    run(backend, main, timeout=120)


def test_the_file_api_refuses_another_loop(tmp_path):
    async def main():
        await uringio.open_file(tmp_path / "x", "wb")

    with pytest.raises(RuntimeError, match="uringio's event loop"):
        asyncio.run(main())


def test_the_tutorials_example_runs_as_written(backend):
    # docs/tutorial-files.md includes examples/files_demo.py.
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "examples", "files_demo.py"),
                          "--backend", backend, "--reads", "2000", "--depth", "16"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "1000 lines, the last 'line 999\\n'" in out
    assert "2000 random 4 KiB reads, 16 in flight:" in out


def test_a_write_the_file_takes_nothing_of_is_eio_not_a_short_success(backend, tmp_path,
                                                                      monkeypatch):
    # A write that returns 0 with bytes left would otherwise be reported
    # as complete (uring) or retried forever (the epoll pool).
    loop = open_loop(backend)
    try:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
        if backend == "uring":
            real = type(loop)._on_file_write

            def takes_nothing(self, op, res, flags):
                real(self, op, 0 if res > 0 else res, flags)
            monkeypatch.setattr(type(loop), "_on_file_write", takes_nothing)
        else:
            monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
        result = core_call(loop, "file_write", fd, b"data", 0)
        assert isinstance(result, OSError) and result.errno == errno.EIO, result
        os.close(fd)
    finally:
        loop.close()


def _slow_pipe(pieces: list[bytes]) -> tuple[int, threading.Thread]:
    """A pipe's read end, and a thread writing ``pieces`` into it one at a
    time, then closing it: each read of it comes back short."""
    r, w = os.pipe()

    def writer():
        for piece in pieces:
            os.write(w, piece)
            time.sleep(0.01)
        os.close(w)

    thread = threading.Thread(target=writer)
    thread.start()
    return r, thread


def test_preadinto_continues_short_reads_until_the_buffer_is_full(backend):
    # What preadinto promises: fewer bytes than the buffer holds only at
    # the end of the file, however the kernel splits the read.
    pieces = [os.urandom(1000) for _ in range(8)]
    r, thread = _slow_pipe(pieces)

    async def main():
        async with uringio.open_file(f"/proc/self/fd/{r}", "rb") as f:
            buf = bytearray(5000)
            assert await f.preadinto(buf, -1) == 5000
            assert bytes(buf) == b"".join(pieces)[:5000]
            assert await f.pread(5000, -1) == b"".join(pieces)[5000:]   # then the end

    try:
        run(backend, main)
    finally:
        thread.join()
        os.close(r)


def test_a_failed_read_raises_the_oserror_of_its_errno(backend, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)

    async def main():
        async with uringio.open_file(path, "rb") as f:
            w = os.open(path, os.O_WRONLY)
            os.dup2(w, f.fileno())   # the same number, now not readable
            os.close(w)
            with pytest.raises(OSError) as builtin:
                os.pread(f.fileno(), 10, 0)
            with pytest.raises(OSError) as ours:
                await f.preadinto(bytearray(10), 0)
            assert type(ours.value) is type(builtin.value)
            assert ours.value.errno == builtin.value.errno == errno.EBADF
            with pytest.raises(OSError, match="Bad file descriptor"):
                await f.pread(10, 0)

    run(backend, main)


def test_a_buffer_being_read_into_cannot_be_resized(backend):
    # The kernel writes to where the buffer was when the read started.
    r, w = os.pipe()

    async def main():
        async with uringio.open_file(f"/proc/self/fd/{r}", "rb") as f:
            buf = bytearray(4)
            read = asyncio.ensure_future(f.preadinto(buf, -1))
            await asyncio.sleep(0.02)   # waiting for the pipe
            with pytest.raises(BufferError):
                buf.extend(b"more")
            os.write(w, b"data")
            assert await read == 4 and buf == b"data"
            if backend == "uring":   # (an epoll pool worker holds its last job's
                buf.extend(b"more")  # arguments until it takes the next one)
                assert buf == b"datamore"   # the caller's own again

    try:
        run(backend, main)
    finally:
        os.close(r)
        os.close(w)


def test_a_file_opened_on_one_loop_reads_on_another(backend, tmp_path):
    # The file keeps no loop: a read goes to the loop running it, while
    # the loop it was opened on is stopped (not closed).
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 64)
    first = uringio.new_event_loop(backend)
    second = uringio.new_event_loop(backend)
    try:
        f = first.run_until_complete(uringio.open_file(path, "rb"))

        async def read_on_second():
            buf = bytearray(16)
            assert await f.preadinto(buf, 256) == 16
            return bytes(buf), await f.pread(4, 1)

        assert second.run_until_complete(asyncio.wait_for(read_on_second(), 10)) == (
            bytes(range(16)), bytes(range(1, 5)))
        assert first.run_until_complete(f.pread(3, 2)) == bytes(range(2, 5))
        first.run_until_complete(f.close())
    finally:
        first.close()
        second.close()


def test_a_raising_read_handler_is_reported_and_the_loop_goes_on(backend, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    loop = open_loop(backend)
    reported: list = []
    loop.on_error = lambda what, exc: reported.append(exc)
    try:
        fd = os.open(path, os.O_RDONLY)

        def bad_handler(result):
            raise ValueError(f"handler got {result}")

        loop.file_read(fd, bytearray(3), 0, bad_handler)
        assert loop.run_until(lambda: reported, 10.0)
        assert isinstance(reported[0], ValueError) and str(reported[0]) == "handler got 3"
        buf = bytearray(3)
        assert core_call(loop, "file_read", fd, buf, 0) == 3 and buf == b"abc"
        os.close(fd)
    finally:
        loop.close()


def test_closing_the_loop_with_a_read_in_flight_tells_nobody(backend):
    # As for every other operation: the read is cancelled, its buffer is
    # held until it is over, and no handler runs from a closed loop.
    loop = open_loop(backend)
    r, w = os.pipe()
    heard: list = []
    loop.file_read(r, bytearray(10), -1, heard.append)
    loop.run_once(0)
    if backend == "epoll":
        os.write(w, b"x" * 10)   # a pool thread cannot be cancelled: let it finish
    loop.close()
    assert heard == []
    os.close(r)
    os.close(w)


def test_reads_on_uring_are_prepared_and_completed_without_an_op(backend, tmp_path):
    # The hot path of random reads (_build/_core/fastpath.c, FileReads): no
    # Python Op per read, and the buffer held by the C side until the CQE.
    if backend != "uring":
        pytest.skip("the epoll backend reads on its worker pool")
    path = tmp_path / "f"
    data = os.urandom(64 * 4096)
    path.write_bytes(data)
    r, w = os.pipe()

    async def main():
        core = asyncio.get_running_loop()._core
        async with uringio.open_file(path, "rb") as f, \
                uringio.open_file(f"/proc/self/fd/{r}", "rb") as p:
            ops_before = len(core.ops)
            waiting = asyncio.ensure_future(p.preadinto(bytearray(8), -1))
            reads = [f.pread(4096, i * 4096) for i in reversed(range(64))]
            await asyncio.sleep(0.02)
            assert len(core.ops) == ops_before and core._reads.inflight == 1
            assert await asyncio.gather(*reads) == [data[i * 4096:(i + 1) * 4096]
                                                     for i in reversed(range(64))]
            os.write(w, b"12345678")
            assert await waiting == 8
            assert core._reads.inflight == 0
        # and only from the loop's thread (the ring is SINGLE_ISSUER)
        errors: list = []
        thread = threading.Thread(target=lambda: _try(errors, core.file_read, r,
                                                        bytearray(1), -1, print))
        thread.start()
        thread.join()
        assert isinstance(errors[0], RuntimeError) and "thread" in str(errors[0])

    try:
        run(backend, main)
    finally:
        os.close(r)
        os.close(w)


def _try(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as exc:
        errors.append(exc)
