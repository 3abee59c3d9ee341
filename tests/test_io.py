"""The operation interface, on both backends: accept, recv, send, close."""

import errno
import logging
import os
import socket
import threading

import pytest

from conftest import connected_pair, open_fds, recv_exactly
from uringio import BusyResourceError, open_loop


def run(loop, predicate, timeout=5.0):
    assert loop.run_until(predicate, timeout), "timed out"


def test_accept_recv_send_close(loop, listener):
    accepted, received, sent, closed = [], [], [], []
    loop.accept(listener, accepted.append)
    client = socket.create_connection(listener.getsockname())
    run(loop, lambda: accepted)
    fd = accepted[0]
    assert isinstance(fd, int)
    loop.start_recv(fd, received.append)
    client.sendall(b"hello")
    run(loop, lambda: received)
    assert received == [b"hello"]
    loop.send(fd, b"world", sent.append)
    run(loop, lambda: sent)
    assert sent == [5]
    assert client.recv(100) == b"world"
    loop.close_fd(fd, closed.append)
    run(loop, lambda: closed)
    assert closed == [0]
    assert client.recv(100) == b""  # the server side is really closed
    client.close()
    loop.cancel_accept(listener)


def test_handlers_never_run_inside_the_starting_call(loop):
    fd, client = connected_pair()
    sent = []
    loop.send(fd, b"x", sent.append)
    assert sent == []          # even when the bytes went out at once
    run(loop, lambda: sent)
    assert sent == [1]
    loop.close_fd(fd)
    client.close()


def test_eof_is_empty_bytes_and_ends_the_stream(loop):
    fd, client = connected_pair()
    received = []
    loop.start_recv(fd, received.append)
    client.sendall(b"last words")
    client.shutdown(socket.SHUT_WR)
    run(loop, lambda: received and received[-1] == b"")
    assert b"".join(received) == b"last words"
    # The stream has ended, so a new one may start (and sees EOF again).
    loop.start_recv(fd, received.append)
    run(loop, lambda: received.count(b"") == 2)
    loop.close_fd(fd)
    client.close()


def test_second_recv_on_a_socket_is_refused(loop):
    fd, client = connected_pair()
    loop.start_recv(fd, print)
    with pytest.raises(BusyResourceError, match=f"a recv is already in flight on fd {fd}"):
        loop.start_recv(fd, print)
    with pytest.raises(BusyResourceError):
        loop.recv(fd, 10, print)
    loop.close_fd(fd)
    client.close()


def test_one_shot_recv(loop):
    fd, client = connected_pair()
    got = []
    loop.recv(fd, 4, got.append)
    client.sendall(b"abcdefgh")
    run(loop, lambda: got)
    assert got == [b"abcd"]
    loop.recv(fd, 100, got.append)
    run(loop, lambda: len(got) == 2)
    assert got[1] == b"efgh"
    loop.close_fd(fd)
    client.close()


def test_send_larger_than_the_socket_buffer_arrives_whole(loop):
    fd, client = connected_pair()
    payload = os.urandom(8 << 20)
    sent, received = [], bytearray()

    def reader():
        while len(received) < len(payload):
            chunk = client.recv(1 << 20)
            if not chunk:
                break
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    loop.send(fd, payload, sent.append)
    run(loop, lambda: sent, timeout=20)
    thread.join(10)
    assert sent == [len(payload)]
    assert bytes(received) == payload
    loop.close_fd(fd)
    client.close()


def test_send_copies_a_mutable_buffer(loop):
    fd, client = connected_pair()
    data = bytearray(b"original")
    sent = []
    loop.send(fd, data, sent.append)
    data[:] = b"mutated!"
    run(loop, lambda: sent)
    assert client.recv(100) == b"original"
    loop.close_fd(fd)
    client.close()


def test_send_to_a_reset_peer_reports_the_error(loop):
    fd, client = connected_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # RST
    results = []

    def on_sent(res):
        results.append(res)
        if isinstance(res, int):
            loop.send(fd, b"y" * 65536, on_sent)

    loop.send(fd, b"x" * 65536, on_sent)
    run(loop, lambda: results and not isinstance(results[-1], int))
    exc = results[-1]
    assert isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)
    loop.close_fd(fd)


def test_stop_recv_then_start_recv_loses_nothing(loop):
    fd, client = connected_pair()
    received = []
    chunks = [b"%05d|" % i for i in range(300)]

    def on_data(data):
        received.append(data)
        # Stop and restart from inside the handler, again and again.
        loop.stop_recv(fd)
        loop.call_soon(loop.start_recv, fd, on_data)

    loop.start_recv(fd, on_data)
    for chunk in chunks:
        client.sendall(chunk)
    expected = b"".join(chunks)
    run(loop, lambda: len(b"".join(received)) >= len(expected))
    assert b"".join(received) == expected
    loop.stop_recv(fd)
    loop.close_fd(fd)
    client.close()


def test_close_fd_ends_a_stream_quietly_and_cancels_pending_sends(loop):
    fd, client = connected_pair()
    received, sent, closed = [], [], []
    loop.start_recv(fd, received.append)
    # Fill the socket buffers: the client reads nothing, so this send stays in flight.
    loop.send(fd, b"z" * (16 << 20), sent.append)
    loop.run_until(lambda: False, 0.2)
    loop.close_fd(fd, closed.append)
    run(loop, lambda: closed and sent)
    assert closed == [0]
    assert received == []
    assert isinstance(sent[0], OSError) and sent[0].errno == errno.ECANCELED
    client.close()


def test_no_fd_leaks_over_many_connections(backend, listener):
    before = open_fds()
    loop = open_loop(backend)
    accepted = []

    def on_accept(fd):
        accepted.append(fd)
        loop.start_recv(fd, lambda data, fd=fd: loop.close_fd(fd) if data == b"" else None)

    loop.accept(listener, on_accept)
    for _ in range(200):
        client = socket.create_connection(listener.getsockname())
        client.close()
    run(loop, lambda: len(accepted) == 200)
    loop.run_until(lambda: open_fds() <= before + 2, 5.0)
    loop.cancel_accept(listener)
    loop.close()
    assert open_fds() == before


def test_accept_of_a_thousand_quick_connections(loop, listener):
    accepted = []

    def on_accept(fd):
        accepted.append(fd)
        loop.close_fd(fd)

    loop.accept(listener, on_accept)
    errors = []

    def connect_many():
        for _ in range(1000):
            try:
                socket.create_connection(listener.getsockname(), timeout=5).close()
            except OSError as exc:
                errors.append(exc)

    thread = threading.Thread(target=connect_many)
    thread.start()
    run(loop, lambda: len(accepted) == 1000, timeout=30)
    thread.join(10)
    assert errors == []
    assert all(isinstance(fd, int) for fd in accepted)


def test_a_client_is_accepted_while_one_of_two_loops_sharing_its_listener_stops(backend):
    # A rolling restart: the old worker and its replacement accept on one
    # listener, and the old one stops as a client comes. On io_uring the
    # kernel wakes one accept per connection -- the oldest -- and runs it in
    # that ring's next turn: cancelled before, it took the wake-up along,
    # and the client waited in the backlog for the next one to come.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    lst.setblocking(False)
    old_sock = lst.dup()   # each loop its own fd, as each process has
    old_sock.setblocking(False)
    old, new = open_loop(backend), open_loop(backend)
    old_got, new_got = [], []
    client = None
    try:
        old.accept(old_sock, old_got.append)
        old.run_until(lambda: False, 0.05)   # armed in the kernel, the first to be woken
        new.accept(lst, new_got.append)
        new.run_until(lambda: False, 0.05)
        client = socket.create_connection(lst.getsockname(), timeout=5)
        # (connect(2) on loopback returns once the connection is in the backlog)
        old.cancel_accept(old_sock)
        old_sock.close()
        def got() -> bool:
            return bool(old_got or new_got)

        for _ in range(100):
            if old.run_until(got, 0.02) or new.run_until(got, 0.02):
                break
        assert len(old_got) + len(new_got) == 1
        fd = (old_got or new_got)[0]
        assert isinstance(fd, int)
        os.write(fd, b"served")
        assert recv_exactly(client, 6) == b"served"
        os.close(fd)
    finally:
        if client is not None:
            client.close()
        old.close()
        new.close()
        old_sock.close()
        lst.close()


def test_stream_across_buffer_exhaustion_keeps_every_byte_in_order(backend):
    # Tiny buffers: the uring buffer ring runs dry (-ENOBUFS) again and again
    # while the client floods; epoll reads in small pieces.
    options = {"buffers": 4, "buffer_size": 512} if backend == "uring" else {"recv_size": 512}
    loop = open_loop(backend, **options)
    try:
        fd, client = connected_pair()
        payload = os.urandom(4 << 20)
        received = bytearray()

        def on_data(data):
            assert isinstance(data, bytes), data
            received.extend(data)

        loop.start_recv(fd, on_data)
        thread = threading.Thread(target=client.sendall, args=(payload,))
        thread.start()
        run(loop, lambda: len(received) >= len(payload), timeout=60)
        thread.join(10)
        assert bytes(received) == payload
        if backend == "uring":
            assert loop.enobufs_rearms > 0   # the exhaustion path really ran
        loop.close_fd(fd)
        client.close()
    finally:
        loop.close()


def test_closing_the_loop_with_operations_in_flight(backend):
    before = open_fds()
    loop = open_loop(backend)
    fd, client = connected_pair()
    loop.start_recv(fd, print)
    loop.send(fd, b"q" * (16 << 20), print)
    loop.run_until(lambda: False, 0.1)
    loop.close()   # cancels both and waits for their completions
    if backend == "uring":
        assert len(loop.ops) == 0
    os.close(fd)
    client.close()
    assert open_fds() == before


def test_a_raising_data_handler_is_logged_and_nothing_else_is_lost(loop, caplog):
    # Two streams whose bytes arrive in the same turn: the first handler
    # raises, the second still gets its bytes, and so does the first later.
    (fd_a, client_a), (fd_b, client_b) = connected_pair(), connected_pair()
    got_a, got_b = [], []

    def flaky(data):
        got_a.append(data)
        if len(got_a) == 1:
            raise ValueError("handler bug")

    loop.start_recv(fd_a, flaky)
    loop.start_recv(fd_b, got_b.append)
    client_a.sendall(b"first")
    client_b.sendall(b"other")
    with caplog.at_level(logging.ERROR, logger="uringio"):
        run(loop, lambda: got_a and got_b)
        client_a.sendall(b"second")
        run(loop, lambda: b"".join(got_a) == b"firstsecond")
    assert got_b == [b"other"]
    assert caplog.text.count("ValueError: handler bug") == 1
    for fd, client in ((fd_a, client_a), (fd_b, client_b)):
        loop.close_fd(fd)
        client.close()


def test_a_closed_send_stream_takes_no_more_bytes_and_leaks_none_to_the_next(loop):
    # On uring the next stream reuses the closed one's C slot: a late write
    # through the old stream must fail, not land in the new one.
    (fd_a, client_a), (fd_b, client_b) = connected_pair(), connected_pair()
    old = loop.open_send_stream(fd_a, print)
    write_old = old.write_bytes
    old.close()
    new = loop.open_send_stream(fd_b, print)
    assert write_old(b"stale") < 0 and old.write(b"stale") < 0
    assert new.write(b"fresh") == 5
    client_b.settimeout(5)
    run(loop, lambda: new.buffered == 0)
    assert recv_exactly(client_b, 5) == b"fresh"
    new.close()
    closed = []
    loop.close_fd(fd_a, closed.append)
    loop.close_fd(fd_b, closed.append)
    run(loop, lambda: len(closed) == 2)
    client_a.settimeout(5)
    assert client_a.recv(10) == b""   # nothing stale ever went out
    client_a.close()
    client_b.close()


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "whole-buffers"])
def test_receive_streams_sharing_few_small_buffers_lose_nothing(incremental):
    # Few, small provided buffers, so they run dry (ENOBUFS) and, consumed
    # incrementally, hold pieces of many connections' messages at once;
    # each connection's bytes must still arrive whole and in order.
    from conftest import skip_unless_uring
    skip_unless_uring()
    from uringio._core.uring.loop import ProactorLoop
    loop = ProactorLoop(buffers=16, buffer_size=4096, incremental_buffers=incremental)
    if incremental and not loop.incremental_buffers:
        loop.close()
        pytest.skip("the kernel lacks incremental buffer consumption (Linux 6.12+)")
    try:
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(64)
        fds, received = [], {}
        loop.accept(lst, fds.append)
        clients = [socket.create_connection(lst.getsockname()) for _ in range(32)]
        run(loop, lambda: len(fds) == len(clients))
        for fd in fds:
            received[fd] = bytearray()
            loop.start_recv(fd, received[fd].extend)
        rng = __import__("random").Random(7)
        payloads = [b"".join(os.urandom(rng.randrange(1, 9000)) for _ in range(8))
                    for _ in clients]
        senders = [threading.Thread(target=c.sendall, args=(p,))
                   for c, p in zip(clients, payloads, strict=True)]
        for t in senders:
            t.start()
        total = sum(map(len, payloads))
        run(loop, lambda: sum(map(len, received.values())) >= total, 30.0)
        for t in senders:
            t.join(5)
        # Which server fd is which client: match by the first bytes.
        by_start = {bytes(data[:64]): bytes(data) for data in received.values()}
        assert sorted(by_start) == sorted(p[:64] for p in payloads)
        for p in payloads:
            assert by_start[p[:64]] == p
        assert loop.enobufs_rearms > 0   # the buffers did run dry
        for fd in fds:
            loop.close_fd(fd)
        loop.cancel_accept(lst)
        loop.run_until(lambda: False, 0.05)
        for c in clients:
            c.close()
        lst.close()
    finally:
        loop.close()


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "unix"])
def test_connect_reaches_a_listener_and_reports_a_refusal(loop, family, tmp_path):
    if family == "unix":
        path = str(tmp_path / "sock")
        lst = socket.socket(socket.AF_UNIX)
        lst.bind(path)
        address, refused = path, str(tmp_path / "nobody")
    else:
        fam, host = (socket.AF_INET, "127.0.0.1") if family == "ipv4" else (socket.AF_INET6, "::1")
        try:
            lst = socket.socket(fam)
            lst.bind((host, 0))
        except OSError as exc:
            pytest.skip(f"{family}: {exc}")
        address = lst.getsockname()
        spare = socket.socket(fam)   # a port nobody listens on: bound, then closed
        spare.bind((host, 0))
        refused = spare.getsockname()
        spare.close()
    lst.listen(4)
    results: list = []
    for i, target in enumerate((address, refused)):
        sock = socket.socket(lst.family)
        sock.setblocking(False)
        loop.connect(sock, target, results.append)
        run(loop, lambda i=i: len(results) > i)
        if target == address:
            peer, _ = lst.accept()
            sock.sendall(b"over the connection")
            assert peer.recv(64) == b"over the connection"
            peer.close()
        sock.close()
    assert results[0] == 0
    expected = FileNotFoundError if family == "unix" else ConnectionRefusedError
    assert isinstance(results[1], expected), results[1]
    lst.close()
