"""Connection and Protocol on both backends."""

import os
import socket

import pytest

from uringio import Protocol, Server, listen


class Recorder(Protocol):
    def __init__(self):
        self.events = []
        self.conn = None

    def connection_made(self, conn):
        self.conn = conn
        self.events.append("made")

    def data_received(self, data):
        self.events.append(data)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


def serve(loop, factory):
    return Server(loop, factory, listen("127.0.0.1", 0)).start()


def read_until_closed(loop, client: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes, running the loop meanwhile."""
    client.setblocking(False)
    received = bytearray()

    def closed():
        try:
            while chunk := client.recv(1 << 20):
                received.extend(chunk)
            return True
        except BlockingIOError:
            return False

    assert loop.run_until(closed, timeout), "the server did not close"
    return bytes(received)


def test_burst_of_writes_is_coalesced_and_arrives_in_order(loop):
    chunks = [b"%04d," % i for i in range(1000)]
    streams = []

    class Burst(Protocol):
        def connection_made(self, conn):
            streams.append(conn._stream)
            for chunk in chunks:
                conn.write(chunk)
            conn.close()   # after the queued writes

    server = serve(loop, Burst)
    client = socket.create_connection(server.address, timeout=5)
    assert read_until_closed(loop, client, 5.0) == b"".join(chunks)
    assert streams[0].sends == 1   # 1000 writes in one turn: one send
    server.close()
    client.close()


def test_lifecycle_callbacks_and_clean_close(loop):
    protocols = []

    def factory():
        protocols.append(Recorder())
        return protocols[-1]

    server = serve(loop, factory)
    client = socket.create_connection(server.address, timeout=5)
    client.sendall(b"hi")
    assert loop.run_until(lambda: protocols and b"hi" in protocols[0].events, 5.0)
    client.shutdown(socket.SHUT_WR)
    assert loop.run_until(lambda: ("lost", None) in protocols[0].events, 5.0)
    assert protocols[0].events == ["made", b"hi", "eof", ("lost", None)]
    assert not server.connections
    protocols[0].conn.write(b"late")   # after connection_lost: dropped, no error
    client.settimeout(0)

    def closed_by_server():
        try:
            return client.recv(10) == b""   # eof_received returned None: server closed
        except BlockingIOError:
            return False

    assert loop.run_until(closed_by_server, 5.0)
    server.close()
    client.close()


def test_reset_reaches_connection_lost_and_others_continue(loop):
    protocols = []

    class Echo(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.conn.write(data)

    def factory():
        protocols.append(Echo())
        return protocols[-1]

    server = serve(loop, factory)
    victim = socket.create_connection(server.address, timeout=5)
    other = socket.create_connection(server.address, timeout=5)
    assert loop.run_until(lambda: len(protocols) == 2, 5.0)
    victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    victim.sendall(b"x" * 100000)   # unread echo data makes the close a reset
    victim.close()
    assert loop.run_until(lambda: any(isinstance(e, tuple) for e in protocols[0].events), 5.0)
    lost = [e for e in protocols[0].events if isinstance(e, tuple)]
    assert len(lost) == 1 and isinstance(lost[0][1], ConnectionError), lost
    other.sendall(b"still fine")
    got = []
    other.setblocking(False)

    def read():
        try:
            got.append(other.recv(100))
        except BlockingIOError:
            pass
        return b"".join(got) == b"still fine"

    assert loop.run_until(read, 5.0)
    server.close()
    other.close()


def test_writes_of_bytes_and_of_other_buffers_keep_their_order(loop):
    # Connection.write is fastpath.c's C method: bytes go straight to the
    # stream's writer, anything else through the Python write (copied, so
    # the caller may change it after the call). Interleaved, they arrive
    # in order, each as it was when written.
    from uringio.net.connection import Connection
    assert type(Connection.__dict__["write"]).__name__ == "method_descriptor"

    class Mixed(Protocol):
        def connection_made(self, conn):
            buffer = bytearray(b"b")
            conn.write(b"a")
            conn.write(buffer)
            buffer[:] = b"X"
            conn.write(memoryview(b"c"))
            conn.write(b"d")
            conn.close()

    server = serve(loop, Mixed)
    client = socket.create_connection(server.address, timeout=5)
    assert read_until_closed(loop, client, 5.0) == b"abcd"
    server.close()
    client.close()


def test_write_after_close_is_refused(loop):
    protocols = []

    class Slow(Recorder):
        def connection_made(self, conn):
            super().connection_made(conn)
            conn.write(b"x" * (8 << 20))   # stays in flight: the client reads nothing
            conn.close()

    def factory():
        protocols.append(Slow())
        return protocols[-1]

    server = serve(loop, factory)
    client = socket.create_connection(server.address, timeout=5)
    assert loop.run_until(lambda: protocols, 5.0)
    conn = protocols[0].conn
    assert conn.is_closing()
    with pytest.raises(RuntimeError, match="after close"):
        conn.write(b"more")
    conn.abort()
    assert loop.run_until(lambda: any(isinstance(e, tuple) for e in protocols[0].events), 5.0)
    server.close()
    client.close()


@pytest.mark.parametrize("read_up_to", [0, 100_000, 1 << 20])
def test_sendfile_keeps_order_with_the_writes_around_it(loop, tmp_path, read_up_to):
    # Each file spliced (0), the small one read and written (100_000), or
    # both read (1 MiB): the bytes arrive in the order they were queued.
    first = tmp_path / "one.bin"
    second = tmp_path / "two.bin"
    first.write_bytes(os.urandom(200_000))     # several pipe-sized rounds on uring
    second.write_bytes(os.urandom(70_000))
    files = [open(first, "rb"), open(second, "rb")]

    class Mixed(Protocol):
        def connection_made(self, conn):
            conn.write(b"<a>")
            conn.sendfile(files[0], close=True, read_up_to=read_up_to)
            conn.write(b"<b>")
            conn.write(b"<c>")
            conn.sendfile(files[1], offset=1000, count=50_000, close=True,
                          read_up_to=read_up_to)
            conn.write(b"<d>")
            conn.close()

    server = Server(loop, Mixed, listen("127.0.0.1", 0)).start()
    client = socket.create_connection(server.address, timeout=5)
    expected = (b"<a>" + first.read_bytes() + b"<b><c>" + second.read_bytes()[1000:51_000] + b"<d>")
    assert read_until_closed(loop, client, 10.0) == expected
    assert all(f.closed for f in files)
    server.close()
    client.close()


@pytest.mark.parametrize("read_up_to", [0, 1 << 20])
def test_a_file_shorter_than_promised_resets_the_connection(loop, tmp_path, read_up_to):
    # A response head promised 5,000 bytes and the file has 3,000: the peer
    # must not see a complete-looking stream (spliced or read alike).
    path = tmp_path / "short.bin"
    path.write_bytes(b"z" * 3000)
    results = []

    class Promise(Protocol):
        def connection_made(self, conn):
            conn.write(b"HEAD")
            conn.sendfile(open(path, "rb"), count=5000, close=True, done=results.append,
                          read_up_to=read_up_to)

    server = Server(loop, Promise, listen("127.0.0.1", 0)).start()
    client = socket.create_connection(server.address, timeout=5)
    with pytest.raises(ConnectionResetError):
        read_until_closed(loop, client, 10.0)
    assert loop.run_until(lambda: results, 5)
    assert isinstance(results[0], OSError)
    server.close()
    client.close()


def test_large_and_small_writes_interleave_in_order(loop):
    pieces = [os.urandom(n) for n in (100_000, 10, 9_000, 300, 200_000, 5)]

    class Writer(Protocol):
        def connection_made(self, conn):
            for piece in pieces:
                conn.write(piece)
            conn.close()

    server = Server(loop, Writer, listen("127.0.0.1", 0)).start()
    client = socket.create_connection(server.address, timeout=5)
    assert read_until_closed(loop, client, 10.0) == b"".join(pieces)
    server.close()
    client.close()
