"""The relay (loop.relay, both backends) and the TCP proxy built on it
(``python -m uringio serve proxy --to HOST:PORT``)."""

import contextlib
import errno
import hashlib
import os
import select
import socket
import struct
import threading
import time

import pytest

from conftest import (
    connected_pair,
    open_fds,
    recv_exactly,
    recv_until_eof,
    start_server,
    stop_server,
)
from uringio._core.relay import PIPE_CHUNK, RELAY_BUFFER, VIAS
from uringio._core.uring import ring as uring_ring

# A pump's hold (_build/_core/uring_pumps.c); 0 where io_uring is not built.
UIO_PUMP_HOLD = getattr(uring_ring, "UIO_PUMP_HOLD", 0)

MiB = 1 << 20


# -- the engine's relay ----------------------------------------------------------


@pytest.fixture(params=VIAS)
def via(request):
    return request.param


def test_relay_moves_bytes_until_eof_and_closes_its_pipe(loop, via):
    src, a = connected_pair()
    dst, b = connected_pair()
    before = open_fds()
    results = []
    loop.relay(src, dst, results.append, via=via)
    assert open_fds() == before + (2 if via == "splice" else 0)   # a pipe
    data = os.urandom(3 * max(PIPE_CHUNK, RELAY_BUFFER) + 123)
    sender = threading.Thread(target=lambda: (a.sendall(data), a.shutdown(socket.SHUT_WR)))
    sender.start()
    got = bytearray()

    def receive() -> None:
        got.extend(recv_exactly(b, len(data)))

    receiver = threading.Thread(target=receive)
    receiver.start()
    assert loop.run_until(lambda: results, 10)
    sender.join(10)
    receiver.join(10)
    assert results == [len(data)]
    assert bytes(got) == data
    assert open_fds() == before
    for fd in (src, dst):
        loop.close_fd(fd)
    a.close()
    b.close()


@pytest.mark.parametrize("closed", ["src", "dst"])
def test_closing_either_socket_ends_the_relay(loop, via, closed):
    src, a = connected_pair()
    dst, b = connected_pair()
    before = open_fds()
    results = []
    loop.relay(src, dst, results.append, via=via)
    loop.run_once(0)
    loop.close_fd(src if closed == "src" else dst)
    assert loop.run_until(lambda: results, 5)
    assert isinstance(results[0], OSError) and results[0].errno == errno.ECANCELED
    assert results[0].sent == 0
    loop.close_fd(dst if closed == "src" else src)
    loop.run_once(0)
    assert open_fds() == before - 2   # the two sockets (and the pipe is gone)
    a.close()
    b.close()


def test_a_relay_closed_while_its_destination_is_full_ends_and_holds_nothing(loop, via):
    # Bytes waiting for room in dst when src is closed: the relay ends
    # (ECANCELED, with what dst took), and a second relay on new sockets
    # moves its bytes whole -- nothing of the first is left to leak into it.
    src, a = connected_pair()
    dst, b = connected_pair()
    results = []
    loop.relay(src, dst, results.append, via=via)
    a.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        for _ in range(1000):
            sent += a.send(b"y" * 65536)
            loop.run_once(0)
    loop.close_fd(src)
    assert loop.run_until(lambda: results, 5)
    # (What dst took depends on how far the relay got: never all of it,
    # since the source was stopped by full buffers on the way.)
    assert results[0].errno == errno.ECANCELED and results[0].sent < sent
    loop.close_fd(dst)
    loop.run_once(0)   # (the closes submitted)
    a.close()
    b.close()
    test_relay_moves_bytes_until_eof_and_closes_its_pipe(loop, via)


def test_a_broken_destination_fails_the_relay_with_what_it_took(loop, via):
    src, a = connected_pair()
    dst, b = connected_pair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()   # a reset: splicing into dst fails
    results = []
    loop.relay(src, dst, results.append, via=via)
    a.sendall(b"x" * 1000)
    assert loop.run_until(lambda: results, 5)
    assert isinstance(results[0], OSError)
    assert results[0].errno in (errno.ECONNRESET, errno.EPIPE)
    assert results[0].sent == 0
    loop.close_fd(src)
    loop.close_fd(dst)
    a.close()


# -- the proxy --------------------------------------------------------------------


def _upstream():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.fixture
def upstream():
    sock = _upstream()
    yield sock
    sock.close()


def _proxy(backend: str, port: int, relay: str):
    return start_server(["-m", "uringio", "serve", "proxy", "--port", "0",
                         "--to", f"127.0.0.1:{port}", "--relay", relay], backend)


@pytest.fixture(params=["copy", "splice"])
def relay(request) -> str:
    """Every proxy test runs with both ways of moving bytes."""
    return request.param


@pytest.fixture
def proxy(backend, relay, upstream):
    proc, port = _proxy(backend, upstream.getsockname()[1], relay)
    yield port
    assert stop_server(proc) == 0


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_proxy_passes_bytes_and_half_close_both_ways(proxy, upstream):
    client = socket.create_connection(("127.0.0.1", proxy), timeout=10)
    peer, _ = upstream.accept()
    peer.settimeout(10)
    request = os.urandom(300_000)
    client.sendall(request)
    client.shutdown(socket.SHUT_WR)
    assert recv_until_eof(peer) == request   # the client's FIN came through
    answer = os.urandom(200_000)
    peer.sendall(answer)                     # the other direction still flows
    peer.close()
    assert recv_until_eof(client) == answer
    client.close()


@pytest.mark.parametrize("who", ["client", "upstream"])
def test_a_reset_on_either_side_resets_the_other(proxy, upstream, who):
    client = socket.create_connection(("127.0.0.1", proxy), timeout=10)
    peer, _ = upstream.accept()
    peer.settimeout(10)
    client.sendall(b"hello")
    assert recv_exactly(peer, 5) == b"hello"
    resetter, other = (client, peer) if who == "client" else (peer, client)
    _reset(resetter)
    # Not a clean EOF: a stream cut short must not look complete.
    with pytest.raises(ConnectionResetError):
        while other.recv(100):
            pass
    other.close()


def test_an_unreachable_upstream_resets_the_client(backend, relay):
    gone = _upstream()
    port = gone.getsockname()[1]
    gone.close()   # nothing listens there now
    proc, proxy_port = _proxy(backend, port, relay)
    try:
        # The reset may come before connect() has returned: both count.
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as client:
                client.recv(100)
    finally:
        assert stop_server(proc) == 0


def _tcp_max(name: str) -> int:
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


def test_backpressure_bounds_what_the_proxy_holds_and_loses_nothing(proxy, upstream):
    # The upstream reads nothing: the client's sends must stop once the
    # buffers on the way are full. They are at most: the client's send
    # buffer, the proxy's receive buffer from the client, its pipe, its send
    # buffer to the upstream, the upstream's receive buffer (each at its
    # kernel maximum, as autotuning may grow it), and what the proxy itself
    # holds: a pipe (splice), or its buffers (copy: on epoll one, on uring
    # the pump's UIO_PUMP_HOLD and the one receive that crossed it).
    held = max(PIPE_CHUNK, (UIO_PUMP_HOLD + 1) * RELAY_BUFFER)
    bound = 2 * _tcp_max("tcp_wmem") + 2 * _tcp_max("tcp_rmem") + held
    client = socket.create_connection(("127.0.0.1", proxy), timeout=10)
    peer, _ = upstream.accept()
    client.setblocking(False)
    digest = hashlib.sha256()
    block = os.urandom(64 * 1024)
    sent = 0
    while sent <= bound:
        # Writable again within 2 s while anything on the way still moves.
        if not select.select([], [client], [], 2.0)[1]:
            break
        try:
            n = client.send(block)
        except BlockingIOError:
            continue
        digest.update(block[:n])
        sent += n
    assert sent <= bound, f"the proxy took {sent} bytes with nobody reading"
    client.setblocking(True)
    client.shutdown(socket.SHUT_WR)
    peer.settimeout(10)
    got = hashlib.sha256()
    received = 0
    while chunk := peer.recv(MiB):
        got.update(chunk)
        received += len(chunk)
    assert received == sent and got.digest() == digest.digest()
    peer.close()
    client.close()


@pytest.fixture
def echo_upstream(backend):
    proc, port = start_server(["-m", "uringio", "serve", "echo", "--port", "0"], backend)
    yield port
    assert stop_server(proc) == 0


@pytest.mark.slow
def test_a_gigabyte_both_ways_byte_exact(backend, relay, echo_upstream):
    proc, port = _proxy(backend, echo_upstream, relay)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        total = 1 << 30
        pattern = os.urandom(MiB + 4096)

        def chunk(i: int) -> memoryview:
            # A different window of the pattern per MiB: a lost, repeated or
            # reordered MiB does not match.
            start = (i * 4099) % 4096
            return memoryview(pattern)[start:start + MiB]

        def send() -> None:
            for i in range(total // MiB):
                client.sendall(chunk(i))
            client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        buf = bytearray(MiB)
        received = 0
        mismatch = None
        while True:
            view = memoryview(buf)[received % MiB:]
            n = client.recv_into(view)
            if not n:
                break
            received += n
            if received % MiB == 0 and buf != chunk(received // MiB - 1):
                mismatch = received
                break
        sender.join(30)
        client.close()
        assert mismatch is None, f"bytes differ in the MiB ending at {mismatch}"
        assert received == total
    finally:
        assert stop_server(proc) == 0


@pytest.mark.slow
def test_a_thousand_concurrent_connections_all_complete(backend, relay, echo_upstream):
    proc, port = _proxy(backend, echo_upstream, relay)
    clients = []
    try:
        # All connected before any is used: a thousand pairs at once.
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            clients.append(sock)
        for i, sock in enumerate(clients):
            sock.sendall(b"%08d" % i * 16)
        deadline = time.monotonic() + 60
        for i, sock in enumerate(clients):
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            assert recv_exactly(sock, 128) == b"%08d" % i * 16
            sock.shutdown(socket.SHUT_WR)
        for sock in clients:
            assert sock.recv(1) == b""   # the echo server's EOF, passed back
    finally:
        for sock in clients:
            sock.close()
        assert stop_server(proc) == 0


def test_the_proxy_example(backend, echo_upstream):
    """docs/proxy.md's examples/proxy.py: bytes and half-close both ways,
    and a reset passed on as a reset."""
    proc, port = start_server(["examples/proxy.py", "--port", "0",
                               "--to", f"127.0.0.1:{echo_upstream}"], backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            data = os.urandom(500_000)
            sender = threading.Thread(target=lambda: (client.sendall(data),
                                                      client.shutdown(socket.SHUT_WR)))
            sender.start()
            assert recv_until_eof(client) == data
            sender.join(10)
        upstream = _upstream()
        proc2, port2 = start_server(["examples/proxy.py", "--port", "0",
                                     "--to", f"127.0.0.1:{upstream.getsockname()[1]}"], backend)
        try:
            client = socket.create_connection(("127.0.0.1", port2), timeout=10)
            peer, _ = upstream.accept()
            peer.settimeout(10)
            client.sendall(b"ping")
            assert recv_exactly(peer, 4) == b"ping"
            _reset(client)
            with pytest.raises(ConnectionResetError):
                while peer.recv(100):
                    pass
            peer.close()
        finally:
            stop_server(proc2)
            upstream.close()
    finally:
        assert stop_server(proc) == 0


def test_a_pump_with_a_slow_reader_holds_its_share_and_others_go_on(uring_loop):
    # Small messages into a dst nobody reads: the pump stops receiving once
    # it holds UIO_PUMP_PIECES pieces (without incremental consumption, each
    # small message holds a whole buffer), so it keeps few buffers out of
    # the ring, and a second relay beside it moves its bytes all the same.
    loop = uring_loop
    src, a = connected_pair()
    dst, b = connected_pair()
    stalled = []
    loop.relay(src, dst, stalled.append, via="buffers")
    a.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(100_000):   # until every buffer on the way is full
            a.send(b"m" * 64)
            loop.run_once(0)
    for _ in range(50):
        loop.run_once(0.01)
    ring = loop._ring
    # What a stop can let in: the receives already in the CQ (one turn's).
    assert ring.pumps_buffers(held=True) <= 2 * uring_ring.UIO_PUMP_PIECES
    src2, c = connected_pair()
    dst2, d = connected_pair()
    moved = []
    loop.relay(src2, dst2, moved.append, via="buffers")
    data = os.urandom(4 * RELAY_BUFFER + 1)
    sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
    sender.start()
    got = bytearray()
    receiver = threading.Thread(target=lambda: got.extend(recv_until_eof(d)))
    receiver.start()
    assert loop.run_until(lambda: moved, 10)
    loop.close_fd(dst2)   # (its EOF, for the reader)
    loop.run_once(0)
    sender.join(10)
    receiver.join(10)
    assert moved == [len(data)] and bytes(got) == data
    assert not stalled
    for fd in (src, dst, src2):
        loop.close_fd(fd)
    assert loop.run_until(lambda: stalled, 5) and stalled[0].errno == errno.ECANCELED
    loop.run_once(0)
    assert ring.pumps_buffers(held=True) == 0
    for sock in (a, b, c, d):
        sock.close()


def test_pumps_of_small_messages_keep_their_buffer_pool_small(uring_loop):
    # Fifty relays of 64-byte messages: a burst ends many pumps' receives
    # at once with -ENOBUFS, and each one doubling the pool took it to its
    # most (32,768 buffers of 1 MiB, a page or two of each touched). The
    # pool grows only when none came back: bounded by what can be held.
    loop = uring_loop
    pairs = []
    for _ in range(50):
        src, a = connected_pair()
        dst, b = connected_pair()
        loop.relay(src, dst, lambda res: None, via="buffers")
        b.setblocking(False)
        pairs.append((src, dst, a, b))
    for _ in range(300):
        for _src, _dst, a, _b in pairs:
            a.send(b"x" * 64)
        loop.run_once(0)
        for *_, b in pairs:
            with contextlib.suppress(BlockingIOError):
                b.recv(65536)
    most = len(pairs) * uring_ring.UIO_PUMP_PIECES   # every pump holding its share
    assert 0 < loop._ring.pumps_buffers() <= 2 * most
    for src, dst, a, b in pairs:
        loop.close_fd(src)
        loop.close_fd(dst)
        a.close()
        b.close()
    loop.run_once(0)
