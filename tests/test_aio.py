"""uringio's asyncio event loop, on both backends: asyncio's own APIs (streams,
protocols, TLS, socket operations, timers, executors, signals) running on it,
and the faults asyncio documents. CPython's own test suite is the judge of
compatibility beyond these (docs/asyncio.md)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import socket
import ssl
import threading
import time
import warnings
import weakref

import pytest

import uringio
from conftest import eventually, open_fds, recv_exactly, signal_off_the_main_thread
from uringio.aio import EventLoop, EventLoopPolicy

MiB = 1 << 20


def run(backend: str, coro_fn, timeout: float = 30.0):
    """Run ``coro_fn()`` to completion on a fresh uringio loop, bounded in time."""
    async def bounded():
        return await asyncio.wait_for(coro_fn(), timeout)
    return uringio.run(bounded(), backend=backend)


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_the_loop_is_uringios_on_the_backend_asked_for(backend):
    async def main():
        loop = asyncio.get_running_loop()
        return type(loop), loop.backend, isinstance(loop, asyncio.AbstractEventLoop)

    assert run(backend, main) == (EventLoop, backend, True)


# -- one turn: one ready queue and one timer heap for asyncio and the core ----------------

@pytest.mark.parametrize("debug", [False, True])
def test_asyncio_and_the_core_share_one_ready_queue_and_one_timer_heap(backend, debug):
    """The core's callbacks and timers go into asyncio's own ready queue
    and timer heap, and fire in one order with asyncio's, in debug mode
    too (where asyncio's turn would time each callback)."""
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(debug)
        core = loop._core
        assert core._ready is loop._ready and core._timers is loop._scheduled
        seen: list[str] = []
        done = loop.create_future()
        loop.call_later(0.03, seen.append, "asyncio 30 ms")
        core.call_later(0.02, seen.append, "core 20 ms")
        loop.call_later(0.01, seen.append, "asyncio 10 ms")
        cancelled = core.call_later(0.015, seen.append, "core, cancelled")
        loop.call_later(0.005, seen.append, "asyncio, cancelled").cancel()
        cancelled.cancel()
        core.call_soon(seen.append, "core soon")
        loop.call_soon(seen.append, "asyncio soon")
        loop.call_later(0.04, done.set_result, None)
        await done
        return seen

    assert run(backend, main) == ["core soon", "asyncio soon", "asyncio 10 ms", "core 20 ms",
                                  "asyncio 30 ms"]


def test_a_core_callback_that_raises_reaches_asyncios_exception_handler(backend):
    async def main():
        loop = asyncio.get_running_loop()
        reported: list[dict] = []
        loop.set_exception_handler(lambda loop, context: reported.append(context))

        def fails() -> None:
            raise ValueError("from the core")

        loop._core.call_soon(fails)
        await asyncio.sleep(0.01)
        return [type(c.get("exception")) for c in reported]

    assert run(backend, main) == [ValueError]


def test_a_slow_callback_is_reported_in_debug_mode(backend, caplog):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01
        loop.call_soon(time.sleep, 0.05)
        await asyncio.sleep(0.1)

    with caplog.at_level("WARNING", logger="asyncio"):
        run(backend, main)
    assert any("Executing <Handle sleep" in r.getMessage() and "took" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_streams_echo_small_and_large_messages_and_eof(backend):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(50):
            writer.write(b"message %03d" % i)
            assert await reader.readexactly(11) == b"message %03d" % i
        big = os.urandom(4 * MiB)
        writer.write(big)
        assert await reader.readexactly(len(big)) == big
        writer.write_eof()
        assert await reader.read() == b""   # the server saw EOF and closed
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(backend, main)


def test_protocol_transport_is_an_asyncio_transport_with_its_extra_info(backend):
    async def main():
        loop = asyncio.get_running_loop()
        made = loop.create_future()

        class Echo(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                made.set_result(transport)

            def data_received(self, data):
                self.transport.write(data)

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = bytearray()
        done = loop.create_future()

        class Client(asyncio.Protocol):
            def data_received(self, data):
                got.extend(data)
                if len(got) >= 5:
                    done.set_result(None)

        transport, _ = await loop.create_connection(Client, "127.0.0.1", port)
        transport.write(b"hello")
        await done
        server_side = await made
        assert bytes(got) == b"hello"
        assert isinstance(transport, asyncio.Transport)
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        assert server_side.get_extra_info("sockname") == ("127.0.0.1", port)
        assert transport.get_extra_info("socket").fileno() >= 0
        assert transport.get_extra_info("no such thing", "dflt") == "dflt"
        transport.close()
        server.close()
        await server.wait_closed()

    run(backend, main)


def test_a_buffered_protocol_receives_into_its_own_buffer(backend):
    async def main():
        loop = asyncio.get_running_loop()
        payload = os.urandom(3 * MiB)
        received = bytearray()
        done = loop.create_future()

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(1000)   # smaller than what arrives at once

            def get_buffer(self, sizehint):
                return self.buf

            def buffer_updated(self, nbytes):
                received.extend(self.buf[:nbytes])

            def eof_received(self):
                done.set_result(None)

        server = await loop.create_server(Buffered, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        writer.write_eof()
        await done
        assert bytes(received) == payload
        writer.close()
        server.close()

    run(backend, main)


def test_flow_control_pauses_and_resumes_writing(backend):
    async def main():
        loop = asyncio.get_running_loop()
        events = []
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)

        class Writer(asyncio.Protocol):
            def pause_writing(self):
                events.append("pause")

            def resume_writing(self):
                events.append("resume")

        transport, _ = await loop.create_connection(Writer, *lst.getsockname())
        peer, _ = lst.accept()   # connected already: no wait
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        transport.set_write_buffer_limits(high=64 * 1024)
        # More than both sockets' buffers can hold: some of it must wait in
        # ours, so the protocol is paused; reading it all resumes it.
        sndbuf = transport.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF)
        payload = os.urandom(4 * sndbuf + 8 * MiB)
        transport.write(payload)
        assert events == ["pause"]
        got = await loop.run_in_executor(None, recv_exactly, peer, len(payload))
        assert await eventually(lambda: "resume" in events)
        assert got == payload and events == ["pause", "resume"]
        transport.close()
        peer.close()
        lst.close()

    run(backend, main)


def test_a_peer_reset_reaches_connection_lost_with_the_error(backend):
    async def main():
        loop = asyncio.get_running_loop()
        lost = loop.create_future()
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)

        class Watch(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        transport, _ = await loop.create_connection(Watch, *lst.getsockname())
        peer, _ = lst.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        peer.close()   # with SO_LINGER 0: a reset
        exc = await lost
        assert isinstance(exc, ConnectionResetError), exc
        assert transport.is_closing()
        lst.close()

    run(backend, main)


def test_socket_operations_and_a_cancelled_receive(backend):
    async def main():
        loop = asyncio.get_running_loop()
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, lst.getsockname())
        peer, _ = lst.accept()
        await loop.sock_sendall(sock, b"x" * (2 * MiB))
        assert recv_exactly(peer, 2 * MiB) == b"x" * (2 * MiB)
        peer.sendall(b"reply")
        assert await loop.sock_recv(sock, 100) == b"reply"
        buf = bytearray(10)
        peer.sendall(b"into")
        assert await loop.sock_recv_into(sock, buf) == 4 and buf[:4] == b"into"
        # A receive cancelled while waiting: nothing is left that could
        # write into its buffer, and the next receive gets the next bytes.
        task = asyncio.ensure_future(loop.sock_recv(sock, 100))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        peer.sendall(b"after")
        assert await loop.sock_recv(sock, 100) == b"after"
        refused = socket.socket()
        refused.setblocking(False)
        spare = socket.socket()
        spare.bind(("127.0.0.1", 0))
        address = spare.getsockname()
        spare.close()
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(refused, address)
        for s in (refused, sock, peer, lst):
            s.close()

    run(backend, main)


def test_a_receive_taken_over_or_cancelled_late_loses_no_bytes(backend):
    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = socket.socketpair()
        sock.setblocking(False)
        # A new sock_recv made before a cancelled one's task has run (as
        # wait_for and a retry do) takes over its receive, and its bytes.
        first = asyncio.ensure_future(loop.sock_recv(sock, 100))
        await asyncio.sleep(0.01)
        peer.sendall(b"one")
        first.cancel()
        second = asyncio.ensure_future(loop.sock_recv(sock, 100))
        assert await second == b"one"
        assert first.cancelled()
        # Bytes a receive brought after its caller was cancelled go to the
        # next caller, ahead of what came later.
        third = asyncio.ensure_future(loop.sock_recv(sock, 100))
        await asyncio.sleep(0.01)
        peer.sendall(b"two")
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        peer.sendall(b"three")
        got = b""
        while len(got) < len(b"twothree"):
            got += await loop.sock_recv(sock, 2)   # fewer than it has: the rest waits
        assert got == b"twothree"
        sock.close()
        peer.close()

    run(backend, main)


def test_concurrent_sock_sendalls_arrive_whole_and_in_order(backend):
    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = socket.socketpair()
        sock.setblocking(False)
        sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        # Each larger than the socket buffers: both wait for room, and the
        # reader's pace decides when each may go on.
        size = 4 * sndbuf
        sends = [asyncio.ensure_future(loop.sock_sendall(sock, bytes([c]) * size))
                 for c in b"abc"]
        got = await loop.run_in_executor(None, recv_exactly, peer, 3 * size)
        await asyncio.gather(*sends)
        assert got == b"a" * size + b"b" * size + b"c" * size
        sock.close()
        peer.close()

    run(backend, main)


def test_a_drain_released_while_flushing_does_not_wait_for_io(backend):
    # The epoll loop writes what a turn queued just before it waits; when
    # that write lets a paused writer go on, the wait must not block (it
    # did: a task resumed there waited for IO that never came).
    async def main():
        loop = asyncio.get_running_loop()
        received = bytearray()

        def reader(conn):
            while chunk := conn.recv(1 << 16):
                received.extend(chunk)

        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        reader_done = loop.run_in_executor(None, lambda: reader(lst.accept()[0]))
        _, writer = await asyncio.open_connection(*lst.getsockname())
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        high = 16 * 1024
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 4 * high
        writer.transport.set_write_buffer_limits(high=high)
        for _ in range(256):   # each pause is released by a write the socket takes whole
            writer.write(b"x" * 4096)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        await reader_done
        assert len(received) == 256 * 4096
        lst.close()

    run(backend, main, timeout=10)


def test_writes_between_close_and_the_end_are_sent_and_nothing_outlives_it(backend):
    # As asyncio's transports: bytes written after close(), while earlier
    # ones are still buffered, go out before the FIN (asyncio's TLS
    # protocol writes its last records so); once the connection is over,
    # the transport and its protocol are freed by reference counting.
    async def main():
        loop = asyncio.get_running_loop()
        lost = loop.create_future()

        class Closer(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport   # a cycle, as asyncio's protocols keep
                transport.set_write_buffer_limits(high=1024)
                transport.write(b"a" * (4 << 20))
                transport.close()
                transport.write(b"tail")

            def connection_lost(self, exc):
                lost.set_result(exc)

        sock, peer = socket.socketpair()
        transport, protocol = await loop.connect_accepted_socket(Closer, sock)
        got = await loop.run_in_executor(None, recv_exactly, peer, (4 << 20) + 4)
        assert got.endswith(b"tail") and peer.recv(1) == b""
        assert await lost is None
        await asyncio.sleep(0)   # the loop drops its last references to the callback
        gone = weakref.ref(protocol), weakref.ref(transport)
        del transport, protocol
        assert [ref() for ref in gone] == [None, None]
        peer.close()

    gc.disable()
    try:
        run(backend, main)
    finally:
        gc.enable()


def test_tls_server_and_client_with_asyncios_sslproto(backend):
    import test as cpython_tests
    certs = os.path.join(os.path.dirname(cpython_tests.__file__), "certdata", "keycert.pem")
    if not os.path.exists(certs):
        pytest.skip("CPython's test certificates are not installed")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE

    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        payload = os.urandom(MiB)
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        assert writer.get_extra_info("sslcontext") is client_ctx
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(backend, main)


def test_timers_executor_and_threadsafe_callbacks(backend):
    async def main():
        loop = asyncio.get_running_loop()
        order = []
        loop.call_later(0.02, order.append, "later")
        loop.call_at(loop.time() + 0.01, order.append, "at")
        loop.call_soon(order.append, "soon")
        await asyncio.sleep(0.05)
        assert order == ["soon", "at", "later"]
        assert await loop.run_in_executor(None, sum, range(10)) == 45
        woken = loop.create_future()
        # From another thread, while the loop waits in the kernel.
        threading.Timer(0.05, loop.call_soon_threadsafe, (woken.set_result, "woken")).start()
        assert await woken == "woken"
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        assert infos[0][4] == ("127.0.0.1", 80)

    run(backend, main)


def test_the_c_ready_queue_keeps_asyncios_handle_semantics(backend):
    # call_soon and the turn's run of ready handles are C (aio/_ready):
    # the handles are still asyncio's, cancellable, run in their context,
    # their exceptions reported as asyncio reports them.
    var = contextvars.ContextVar("var", default="unset")
    loop = uringio.new_event_loop(backend)
    try:
        reported, seen = [], []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))

        def boom():
            raise ValueError("boom")

        handle = loop.call_soon(seen.append, "cancelled")
        assert isinstance(handle, asyncio.Handle)
        handle.cancel()
        context = contextvars.copy_context()
        context.run(var.set, "theirs")
        loop.call_soon(lambda: seen.append(var.get()), context=context)
        loop.call_soon(lambda: seen.append(var.get()))
        failing = loop.call_soon(boom)
        loop.call_soon(seen.append, "after")
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == ["theirs", "unset", "after"]
        assert len(reported) == 1 and reported[0]["handle"] is failing
        assert isinstance(reported[0]["exception"], ValueError)
        assert reported[0]["message"].startswith("Exception in callback")
        with pytest.raises(TypeError):
            loop.call_soon(print, bogus=1)

        # KeyboardInterrupt leaves the turn, as from asyncio's own loop.
        def interrupt():
            raise KeyboardInterrupt
        loop.call_soon(interrupt)
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(0.01))

        # Debug mode is asyncio's own call_soon, with its thread check.
        loop.set_debug(True)
        assert "call_soon" not in vars(loop)

        def attempt():
            try:
                loop.call_soon(print)
            except RuntimeError as exc:
                return exc

        async def from_another_thread():
            return await loop.run_in_executor(None, attempt)

        exc = loop.run_until_complete(from_another_thread())
        assert isinstance(exc, RuntimeError) and "thread" in str(exc)
        loop.set_debug(False)
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_an_uninitialised_ready_queue_refuses():
    from uringio.aio._ready import Ready
    with pytest.raises(RuntimeError):
        Ready.__new__(Ready)(print)
    with pytest.raises(RuntimeError):
        Ready.__new__(Ready).run(1)


def test_a_signal_handler_runs_on_the_loop(backend):
    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "usr1")
        try:
            threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            assert await got == "usr1"
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1)
        assert not loop.remove_signal_handler(signal.SIGUSR1)

    run(backend, main)


def test_closing_the_loop_with_a_transport_open_warns_and_closes_it(backend):
    before = open_fds()
    loop = uringio.new_event_loop(backend)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    transport, _ = loop.run_until_complete(
        loop.create_connection(asyncio.Protocol, *lst.getsockname()))
    peer, _ = lst.accept()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.close()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert transport.is_closing()
    peer.settimeout(5)
    assert peer.recv(10) == b""   # closed on our side
    peer.close()
    lst.close()
    gc.collect()
    assert open_fds() == before   # the loop's own, and the transport's


def test_the_policy_and_install_make_uringio_loops(backend):
    policy = EventLoopPolicy(backend)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, EventLoop) and loop.backend == backend
    finally:
        loop.close()
    old = asyncio.get_event_loop_policy()
    try:
        uringio.install(backend)
        loop = asyncio.new_event_loop()
        assert isinstance(loop, EventLoop) and loop.backend == backend
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


@pytest.mark.parametrize("cycles", [2000, pytest.param(20000, marks=pytest.mark.slow)])
def test_connect_close_cycles_leak_no_fd(backend, cycles):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        baseline = open_fds()
        for _ in range(cycles):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            await writer.wait_closed()
        # The server's side closes after our FIN.
        assert await eventually(lambda: open_fds() == baseline), (open_fds(), baseline)
        server.close()
        await server.wait_closed()

    run(backend, main, timeout=120)


def test_sock_accept_takes_one_connection_and_a_cancelled_one_takes_none(backend):
    async def main():
        loop = asyncio.get_running_loop()
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        lst.setblocking(False)
        waiting = asyncio.ensure_future(loop.sock_accept(lst))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        clients = [socket.create_connection(lst.getsockname()) for _ in range(2)]
        accepted = [await loop.sock_accept(lst) for _ in clients]
        for (conn, peer), client in zip(accepted, clients, strict=True):
            assert peer == client.getsockname()
            client.sendall(b"hi")
            assert await loop.sock_recv(conn, 2) == b"hi"
            conn.close()
            client.close()
        lst.close()

    run(backend, main)


def test_unix_socket_server_and_connection(backend, tmp_path):
    path = str(tmp_path / "echo.sock")

    async def main():
        server = await asyncio.start_unix_server(echo_handler, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"over a unix socket")
        assert await reader.readexactly(18) == b"over a unix socket"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        with pytest.raises(FileNotFoundError):
            await asyncio.open_unix_connection(str(tmp_path / "nobody.sock"))

    run(backend, main)


def test_add_reader_is_level_triggered_and_add_writer_fires(backend):
    async def main():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        calls = []

        def readable():
            calls.append(ours.recv(1))   # one byte a call: the rest keeps it ready

        loop.add_reader(ours, readable)
        theirs.sendall(b"abc")
        assert await eventually(lambda: len(calls) >= 3), calls
        assert calls == [b"a", b"b", b"c"]
        assert loop.remove_reader(ours) and not loop.remove_reader(ours)
        theirs.sendall(b"d")
        await asyncio.sleep(0.05)
        assert calls == [b"a", b"b", b"c"]   # removed: not called again
        writable = loop.create_future()
        loop.add_writer(ours.fileno(), lambda: writable.done() or writable.set_result(True))
        assert await writable
        assert loop.remove_writer(ours.fileno())
        # A transport's fd is the transport's: no readiness callbacks on it.
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=theirs)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(transport.get_extra_info("socket").fileno(), readable)
        transport.close()
        ours.close()

    run(backend, main)


def test_a_signal_handler_runs_however_the_signal_lands(backend):
    # As the core loop's test (test_loop.py): a signal another thread takes
    # does not interrupt the wait; the handler must still run at once, not
    # when the timer ends the wait (then both would run in that turn).
    loop = uringio.new_event_loop(backend)
    stopped_by = []

    def stop(by: str) -> None:
        stopped_by.append(by)
        loop.stop()

    try:
        loop.add_signal_handler(signal.SIGUSR1, stop, "signal")
        loop.call_later(10, stop, "timer")
        with signal_off_the_main_thread(signal.SIGUSR1):
            loop.run_forever()
        loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        loop.close()
    assert stopped_by == ["signal"]
