"""``uringio.trio``: unmodified trio and anyio programs on uringio's IO
manager, on both backends -- the run's manager is uringio's (and only that
run's), its readiness waits, cancellation and notify_closing, signals,
threads, subprocesses, TLS streams, guest mode, and the refusal of a trio
release it was not tested with. (trio's own suite, with the manager in
place: tests/test_trio_suite.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys

import anyio
import pytest
import trio
import trio.testing
import trustme
from trio._core._io_epoll import EpollIOManager

import uringio.trio as utrio

TIMEOUT = 10


def manager():
    return trio.lowlevel.current_statistics().io_statistics


def test_the_run_gets_uringios_manager_and_only_that_run(backend):
    async def main():
        return manager().backend, type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager)

    assert utrio.run(main, backend=backend) == (backend, utrio.IOManager)

    async def plain():
        return type(trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager)

    assert trio.run(plain) is EpollIOManager   # the next plain trio.run: trio's own


def test_a_trio_release_not_tested_is_refused_in_one_line(monkeypatch):
    with pytest.raises(utrio.UnsupportedTrio) as refused:
        utrio.check_trio_version("0.30.0")
    assert str(refused.value) == (f"uringio.trio runs on trio {', '.join(utrio.TRIO_VERSIONS)}, "
                                  "not trio 0.30.0 (the IO manager hook is private to trio)")
    monkeypatch.setattr(trio, "__version__", "0.99.1")
    with pytest.raises(utrio.UnsupportedTrio):
        utrio.run(trio.sleep, 0)
    utrio.check_trio_version("0.35.2")   # a patch release of a tested one


def test_tcp_echo_with_waits_cancelled_and_closed(backend):
    # trio's own serve_tcp and streams; a wait cancelled by a deadline; a
    # wait woken by notify_closing with ClosedResourceError.
    async def main():
        async def echo(stream):
            async for chunk in stream:
                await stream.send_all(chunk)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, echo, 0)
            port = listeners[0].socket.getsockname()[1]
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                for size in (1, 1000, 60_000):   # (each echoed before the next)
                    await stream.send_all(b"x" * size)
                    got = 0
                    while got < size:
                        got += len(await stream.receive_some())
            a, b = socket.socketpair()
            with a, b:
                with trio.move_on_after(0.05) as scope:
                    await trio.lowlevel.wait_readable(a)
                assert scope.cancelled_caught
                # the listener's accept, and trio's own wakeup socket (run_sync_soon):
                assert manager().tasks_waiting_read == len(listeners) + 1

                async def closer():
                    await trio.testing.wait_all_tasks_blocked()
                    trio.lowlevel.notify_closing(a)

                nursery.start_soon(closer)
                with pytest.raises(trio.ClosedResourceError):
                    await trio.lowlevel.wait_readable(a)
            nursery.cancel_scope.cancel()
        return "ok"

    assert utrio.run(main, backend=backend) == "ok"


def test_signals_threads_subprocesses_and_files(backend, tmp_path):
    path = tmp_path / "f.txt"

    async def main():
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            os.kill(os.getpid(), signal.SIGUSR1)
            with trio.fail_after(TIMEOUT):
                assert await signals.__anext__() == signal.SIGUSR1
        token = trio.lowlevel.current_trio_token()
        assert await trio.to_thread.run_sync(
            lambda: trio.from_thread.run_sync(lambda: "back", trio_token=token)) == "back"
        done = await trio.run_process([sys.executable, "-c", "print('child')"],
                                      capture_stdout=True)
        assert done.stdout == b"child\n"
        async with await trio.open_file(path, "w") as f:
            await f.write("written")
        return (await trio.Path(path).read_text())

    assert utrio.run(main, backend=backend) == "written"


def test_tls_stream(backend):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def main():
        async def handler(stream):
            await stream.send_all((await stream.receive_some()).upper())

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, server_context)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port,
                                                         ssl_context=client_context)
            await stream.send_all(b"secret")
            answer = await stream.receive_some()
            await stream.aclose()
            nursery.cancel_scope.cancel()
        return answer

    assert utrio.run(main, backend=backend) == b"SECRET"


def test_anyio_on_trio_on_uringio(backend):
    # anyio's own API (its trio backend, picked by sniffio inside the run).
    async def main():
        async def echo(client):
            async with client:
                await client.send(await client.receive())

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"anyio")
                answer = await client.receive()
            tg.cancel_scope.cancel()
        return answer, manager().backend

    assert utrio.run(main, backend=backend) == (b"anyio", backend)


def as_asyncio_guest(trio_main, backend: str):
    """``trio_main()`` as a guest of asyncio's loop, on uringio's manager:
    its result."""
    async def host():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        utrio.start_guest_run(trio_main, backend=backend,
                              run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                              done_callback=done.set_result)
        return (await asyncio.wait_for(done, TIMEOUT)).unwrap()

    return asyncio.run(host())


def test_guest_mode_on_an_asyncio_host(backend):
    # trio as asyncio's guest: its waits in trio's thread, its completions
    # reaped on the host's thread.
    async def trio_main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.send(b"ping")
            await trio.lowlevel.wait_readable(a)
            return a.recv(10), manager().backend

    assert as_asyncio_guest(trio_main, backend) == (b"ping", backend)


def test_a_guest_run_refuses_uringios_streams(backend):
    # Their completions are not what the guest's waiting thread watches.
    async def trio_main():
        a, b = socket.socketpair()
        with a, b, pytest.raises(RuntimeError, match="not trio.run or a guest run"):
            utrio.SocketStream(a)
        return "refused"

    assert as_asyncio_guest(trio_main, backend) == "refused"


def test_python_m_uringio_trio_runs_a_script_unmodified(backend, tmp_path):
    # Every trio.run the script makes gets uringio's manager (two here).
    script = tmp_path / "prog.py"
    script.write_text("import sys, trio\n"
                      "async def main():\n"
                      "    return trio.lowlevel.current_statistics().io_statistics.backend\n"
                      "print(trio.run(main), trio.run(main), sys.argv[1:])\n")
    import subprocess

    from conftest import REPO
    done = subprocess.run([sys.executable, "-m", "uringio.trio", "--backend", backend,
                           str(script), "a", "--b"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{backend} {backend} ['a', '--b']\n"


@pytest.mark.parametrize("streams", [[], ["--streams"]], ids=["trio-streams", "uringio-streams"])
def test_the_tutorials_example_echoes_and_stops_on_sigterm(backend, streams):
    from conftest import start_server, stop_server

    proc, port = start_server(["examples/trio_echo.py", "--port", "0", *streams], backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            for size in (1, 5000, 100_000):
                sock.sendall(b"e" * size)
                got = b""
                while len(got) < size:
                    got += sock.recv(1 << 20)
                assert got == b"e" * size
    finally:
        assert stop_server(proc) == 0


def test_files_on_the_engine(backend, tmp_path):
    # uringio.trio.open_file: the engine's file operations awaited by trio
    # tasks (many in flight at once), the same objects asyncio code gets;
    # a task cancelled while its read is in flight gets Cancelled after it.
    path = tmp_path / "data.bin"
    content = bytes(range(256)) * 64   # 16 KiB

    async def main() -> list:
        async with utrio.open_file(path, "wb") as f:
            assert await f.write(content) == len(content)
        got: dict[int, bytes] = {}
        async with await utrio.open_file(path, "rb") as f:
            async def read_block(i: int) -> None:
                got[i] = await f.pread(4096, i * 4096)

            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(read_block, i)
            assert b"".join(got[i] for i in range(4)) == content
            with trio.CancelScope() as scope:
                scope.cancel()
                await f.pread(10, 0)
            assert scope.cancelled_caught
        async with utrio.open_file(path, "a") as text:
            await text.write("\nline two\n")
        async with utrio.open_file(path, "rb") as f:
            await f.seek(len(content))
            lines = [line async for line in f]
        await utrio.files.copy(path, tmp_path / "copy.bin")
        size = (await utrio.files.stat(tmp_path / "copy.bin")).st_size
        await utrio.files.remove(tmp_path / "copy.bin")
        with pytest.raises(FileNotFoundError):
            await utrio.open_file(tmp_path / "missing", "rb")
        return [lines, size, manager().backend]

    assert utrio.run(main, backend=backend) == [
        [b"\n", b"line two\n"], len(content) + 10, backend]


def test_the_file_api_says_which_runs_it_needs():
    async def main() -> None:
        with pytest.raises(RuntimeError, match="uringio.trio.run"):
            await utrio.open_file("/etc/hostname", "rb")

    trio.run(main)
