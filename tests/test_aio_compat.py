"""uringio's asyncio loop beside asyncio's own, scenario by scenario.

Each test runs the same code on both uringio backends and on asyncio's
default loop, the reference: what it asserts is what asyncio's loop does,
and uringio's must do the same. Each scenario is one a compatibility run
found uringio's loop to get wrong.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket

import pytest

import uringio.aio
from conftest import BACKENDS, skip_unless_uring

KINDS = [*BACKENDS, "asyncio"]
TIMEOUT = 5.0   # bounds a hang; never a measurement
PAYLOAD = 4 << 20   # what a waiting sock_sendall sends: far more than the buffers take


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    """A uringio backend, or "asyncio": CPython's default loop, the reference."""
    if request.param == "uring":
        skip_unless_uring()
    return request.param


def run(kind: str, coro_fn):
    """``coro_fn()`` on a fresh loop of ``kind``, bounded in time. Fails if
    anything reached the loop's exception handler: asyncio's loop reports
    nothing in these scenarios."""
    reported: list[dict] = []

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop() if kind == "asyncio" else uringio.aio.new_event_loop(kind)
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        return loop

    async def bounded():
        return await asyncio.wait_for(coro_fn(), 4 * TIMEOUT)

    with asyncio.Runner(loop_factory=new_loop) as runner:
        result = runner.run(bounded())
    assert reported == []
    return result


def bounded(aw):
    return asyncio.wait_for(aw, TIMEOUT)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1, both non-blocking, with small
    buffers: a few hundred KiB fill them."""
    with socket.socket() as lst:
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.connect(lst.getsockname())
        peer, _ = lst.accept()
    sock.setblocking(False)
    peer.setblocking(False)
    return sock, peer


def unix_stream_pair(address: str) -> tuple[socket.socket, socket.socket]:
    """A connected AF_UNIX stream pair through a listener on ``address`` (a
    path, or an abstract name starting with NUL), both non-blocking."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lst:
        lst.bind(address)
        lst.listen(1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.connect(address)
        peer, _ = lst.accept()
    sock.setblocking(False)
    peer.setblocking(False)
    return sock, peer


def unix_address(how: str, tmp_path) -> str:
    if how == "path":
        return str(tmp_path / "sock")
    return f"\0uringio-compat-{os.getpid()}-{os.urandom(6).hex()}"


def socketpair_on(fd: int, type: int = socket.SOCK_STREAM) -> tuple[socket.socket, socket.socket]:
    """A connected AF_UNIX pair whose first socket has the number ``fd`` --
    a closed socket's, free now -- both non-blocking."""
    a, b = socket.socketpair(socket.AF_UNIX, type)
    if b.fileno() == fd:
        a, b = b, a
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def the_fd_serves_a_new_stream_socket(fd: int) -> None:
    """A new socket on a closed one's fd number: both directions work, so
    the loop holds nothing of the old socket under that number."""
    loop = asyncio.get_running_loop()
    new, peer = socketpair_on(fd)
    with new, peer:
        peer.send(b"ping")
        assert await bounded(loop.sock_recv(new, 4)) == b"ping"
        await bounded(loop.sock_sendall(new, b"pong"))
        assert await bounded(loop.sock_recv(peer, 4)) == b"pong"


async def read_until_eof(sock: socket.socket) -> int:
    """Bytes ``sock`` receives until its peer is closed (bounded)."""
    loop = asyncio.get_running_loop()
    total = 0
    while chunk := await bounded(loop.sock_recv(sock, 1 << 16)):
        total += len(chunk)
    return total


def waiting_call(op: str, sock: socket.socket):
    """The sock_* call ``op`` on ``sock``, one that has to wait (nothing to
    receive; more to send than the buffers take)."""
    loop = asyncio.get_running_loop()
    if op == "sock_recv":
        return loop.sock_recv(sock, 100)
    if op == "sock_recv_into":
        return loop.sock_recv_into(sock, bytearray(100))
    if op == "sock_sendall":
        return loop.sock_sendall(sock, b"x" * PAYLOAD)
    raise ValueError(op)


# -- 1. TCP_NODELAY ------------------------------------------------------------


def test_tcp_transports_get_nodelay_as_on_asyncio(kind):
    # asyncio's socket transport sets TCP_NODELAY (base_events._set_nodelay)
    # on every TCP socket it is given whose protocol says IPPROTO_TCP: the
    # connections it opens and the ones it accepts. A socket the caller made
    # with socket.socket() (protocol 0) keeps what it has.
    def nodelay(writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def main():
        accepted: asyncio.Queue[bool] = asyncio.Queue()

        async def on_client(reader, writer):
            accepted.put_nowait(nodelay(writer))
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        _, opened = await bounded(asyncio.open_connection(*address))
        own = socket.socket()
        own.connect(address)
        _, given = await bounded(asyncio.open_connection(sock=own))
        result = nodelay(opened), await bounded(accepted.get()), nodelay(given)
        for writer in (opened, given):
            writer.close()
            await bounded(writer.wait_closed())
        server.close()
        await bounded(server.wait_closed())
        return result

    assert run(kind, main) == (True, True, False)


# -- 2. a socket closed while a sock_* call waits on it ------------------------

async def close_while_it_waits(sock: socket.socket, call) -> int:
    """Start ``call()`` (a sock_* call that waits), close ``sock`` under it,
    and check what asyncio's loop does: the call goes on waiting, a new one
    raises EBADF at once, and a cancel ends the first quietly. The fd the
    socket had."""
    waiting = asyncio.ensure_future(call())
    await asyncio.sleep(0.05)
    fd = sock.fileno()
    sock.close()
    await asyncio.sleep(0.1)
    assert not waiting.done()
    with pytest.raises(OSError) as again:
        await bounded(call())
    assert again.value.errno == errno.EBADF
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    return fd


@pytest.mark.parametrize("op", ["sock_recv", "sock_recv_into", "sock_sendall"])
def test_closing_a_socket_while_a_sock_call_waits_on_it(kind, op):
    # asyncio's loop: the waiting call gets no error -- epoll just forgets
    # the closed fd -- and waits until it is cancelled; the cancel leaves no
    # trace. The peer sees the socket closed; a new call on it raises EBADF
    # at once (its first try, sock.recv() or sock.send(), meets the closed
    # socket); the fd number serves a new socket.
    async def main():
        sock, peer = tcp_pair()
        with sock, peer:
            fd = await close_while_it_waits(sock, lambda: waiting_call(op, sock))
            # (On io_uring the operation in flight held the socket until
            # the cancel ended it; the peer sees it closed from then on.)
            # What was sent is what the buffers took before the close.
            assert await read_until_eof(peer) < PAYLOAD
            await the_fd_serves_a_new_stream_socket(fd)

    run(kind, main)


def test_closing_a_udp_socket_while_sock_recvfrom_waits_on_it(kind):
    # The readiness path: the same as above, for a datagram socket.
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            fd = await close_while_it_waits(sock, lambda: loop.sock_recvfrom(sock, 100))
            await the_fd_serves_a_new_stream_socket(fd)

    run(kind, main)


# -- 3. a refused connect leaves no reference cycle ----------------------------


@pytest.mark.parametrize("how", ["sock_connect", "create_connection"])
def test_a_refused_connect_leaves_its_exception_in_no_cycle(kind, how):
    # asyncio's sock_connect drops its future once it is done (fut = None in
    # a finally): the exception's traceback holds the frame, which must not
    # hold the future, which holds the exception -- else the exception, its
    # traceback and every frame in it live until the garbage collector runs.
    caught: list[BaseException] = []

    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket() as spare:   # a port nobody listens on
            spare.bind(("127.0.0.1", 0))
            address = spare.getsockname()
        try:
            if how == "sock_connect":
                with socket.socket() as sock:
                    sock.setblocking(False)
                    await bounded(loop.sock_connect(sock, address))
            else:
                await bounded(loop.create_connection(asyncio.Protocol, *address))
        except ConnectionRefusedError as exc:
            caught.append(exc)

    gc.collect()
    gc.disable()
    try:
        run(kind, main)
        assert len(caught) == 1
        holders = [r for r in gc.get_referrers(caught[0]) if isinstance(r, asyncio.Future)]
        assert holders == []
    finally:
        gc.enable()


# -- 4. a cancelled sock_* call, then the socket closed: Unix sockets ---------


async def cancel_then_close(sock: socket.socket, waiting: asyncio.Future) -> int:
    """Let ``waiting`` (a sock_* call on ``sock``) start waiting, cancel it,
    then close ``sock``; the fd it had."""
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    fd = sock.fileno()
    sock.close()
    return fd


@pytest.mark.parametrize("address", ["path", "abstract"])
@pytest.mark.parametrize("op", ["sock_recv", "sock_sendall"])
def test_a_cancelled_sock_call_on_a_unix_stream_socket_then_close(kind, op, address, tmp_path):
    # asyncio's loop: cancelling the call stops it there (a sendall sends no
    # more) and lets go of the fd; closing the socket then raises nothing,
    # the peer sees it closed, and the fd number serves a new socket.
    async def main():
        sock, peer = unix_stream_pair(unix_address(address, tmp_path))
        with sock, peer:
            fd = await cancel_then_close(sock, asyncio.ensure_future(waiting_call(op, sock)))
            # A cancelled sendall sent no more: the peer gets what the
            # buffers took before the cancel, then the end.
            assert await read_until_eof(peer) < PAYLOAD
            await the_fd_serves_a_new_stream_socket(fd)

    run(kind, main)


@pytest.mark.parametrize("address", ["path", "abstract"])
@pytest.mark.parametrize("op", ["sock_recvfrom", "sock_sendto"])
def test_a_cancelled_sock_call_on_a_unix_datagram_socket_then_close(kind, op, address, tmp_path):
    # The same for datagram sockets; and once closed, the socket's name is
    # free at once (an abstract name lives as long as its socket).
    async def main():
        loop = asyncio.get_running_loop()
        name = unix_address(address, tmp_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sock, peer:
            sock.bind(name)
            peer.bind(name + "-peer")
            sock.setblocking(False)
            if op == "sock_recvfrom":
                waiting = asyncio.ensure_future(loop.sock_recvfrom(sock, 100))
            else:
                while True:   # fill the peer's queue: the next datagram waits
                    try:
                        sock.sendto(b"x" * 100, name + "-peer")
                    except BlockingIOError:
                        break
                waiting = asyncio.ensure_future(loop.sock_sendto(sock, b"y", name + "-peer"))
            fd = await cancel_then_close(sock, waiting)
            if address == "path":
                os.unlink(name)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as again:
                again.bind(name)
            new, other = socketpair_on(fd, socket.SOCK_DGRAM)
            with new, other:
                other.send(b"ping")
                assert (await bounded(loop.sock_recvfrom(new, 4)))[0] == b"ping"
                await bounded(loop.sock_sendall(new, b"pong"))
                assert other.recv(4) == b"pong"

    run(kind, main)


# -- a listening socket shared with another server -----------------------------------


def test_closing_a_server_leaves_a_shared_listening_socket_to_the_others(kind):
    # Two servers on one listening socket (two fds of one open file, as the
    # workers of a pre-fork server or gunicorn have it): closing one leaves
    # the other accepting. uringio's loop used to shut the socket down.
    async def main():
        loop = asyncio.get_running_loop()
        first_sock = socket.create_server(("127.0.0.1", 0))
        second_sock = socket.socket(fileno=os.dup(first_sock.fileno()))
        accepted = asyncio.Queue()

        def protocol(name):
            class Greeter(asyncio.Protocol):
                def connection_made(self, transport):
                    transport.write(name)
                    transport.close()
                    accepted.put_nowait(name)
            return Greeter

        first = await loop.create_server(protocol(b"first"), sock=first_sock)
        second = await loop.create_server(protocol(b"second"), sock=second_sock)
        address = first_sock.getsockname()
        first.close()
        await first.wait_closed()
        for _ in range(3):
            reader, writer = await bounded(asyncio.open_connection(*address))
            assert await bounded(reader.read()) == b"second"
            writer.close()
            assert await bounded(accepted.get()) == b"second"
        second.close()
        await second.wait_closed()

    run(kind, main)
