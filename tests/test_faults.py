"""The bad days, on both backends: slow readers, floods, resets, fd
exhaustion, kernel queues overflowing, timeouts and shutdown."""

import errno
import hashlib
import os
import resource
import selectors
import signal
import socket
import threading
import time

import pytest

from conftest import connected_pair, proc_status, start_server, stop_server
from uringio import Protocol, Server, listen, open_loop
from uringio._core.uring.ops import OpKind
from uringio.net.server import ACCEPT_RETRY_DELAY

ECHO = ["-m", "uringio", "serve", "echo", "--host", "127.0.0.1", "--port", "0"]
MiB = 1 << 20


def raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard < n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {n}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def pattern_chunk(i: int, size: int = 64 * 1024) -> bytes:
    """Chunk i of a stream whose every byte depends on its position."""
    return hashlib.shake_128(i.to_bytes(8, "little")).digest(size)


@pytest.mark.slow
def test_slow_reader_keeps_server_memory_bounded(backend):
    """200 MiB pushed, read back slowly: the echo server stops reading while
    its writes back up, so its RSS stays flat, and every byte returns in order."""
    proc, port = start_server(ECHO, backend)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        rss_start = proc_status(proc.pid, "VmRSS")
        chunks = 200 * MiB // (64 * 1024)
        sent_digest = hashlib.sha256()

        def push():
            for i in range(chunks):
                chunk = pattern_chunk(i)
                sent_digest.update(chunk)
                sock.sendall(chunk)

        pusher = threading.Thread(target=push)
        pusher.start()
        got_digest = hashlib.sha256()
        received, peak_growth, deadline = 0, 0, time.monotonic() + 120
        while received < chunks * 64 * 1024 and time.monotonic() < deadline:
            data = sock.recv(256 * 1024)
            assert data, "server closed early"
            got_digest.update(data)
            received += len(data)
            if received % MiB < len(data):
                peak_growth = max(peak_growth, proc_status(proc.pid, "VmRSS") - rss_start)
                time.sleep(0.01)   # the slow part: 1 MiB per 10 ms at most
        pusher.join(30)
        assert received == chunks * 64 * 1024
        assert got_digest.digest() == sent_digest.digest()
        assert peak_growth < 64 * 1024, f"server RSS grew by {peak_growth} kB"
        sock.close()
    finally:
        stop_server(proc)


def _exchange_many(port: int, count: int, timeout: float) -> int:
    """Open ``count`` connections, send one message on each, read each echo."""
    sel = selectors.DefaultSelector()
    socks, done = [], 0
    try:
        for i in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE, [i, b"msg %06d" % i, b""])
        deadline = time.monotonic() + timeout
        while done < count and time.monotonic() < deadline:
            for key, events in sel.select(0.5):
                s, state = key.fileobj, key.data
                if events & selectors.EVENT_WRITE:
                    s.send(state[1])
                    sel.modify(s, selectors.EVENT_READ, state)
                else:
                    state[2] += s.recv(64)
                    if len(state[2]) >= len(state[1]):
                        assert state[2] == state[1]
                        sel.unregister(s)
                        done += 1
        return done
    finally:
        for s in socks:
            s.close()
        sel.close()


@pytest.mark.slow
def test_five_thousand_concurrent_connections(backend):
    raise_fd_limit(5000 + 200)
    proc, port = start_server(ECHO, backend)
    try:
        assert _exchange_many(port, 5000, timeout=60) == 5000
    finally:
        stop_server(proc)


@pytest.mark.slow
def test_twenty_thousand_cycles_leak_no_fd_and_no_memory(backend):
    proc, port = start_server(ECHO, backend)
    try:
        fd_dir = f"/proc/{proc.pid}/fd"
        baseline = len(os.listdir(fd_dir))
        rss = {}
        for i in range(1, 20001):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"ping")
                assert s.recv(16) == b"ping"
            if i in (5000, 20000):
                deadline = time.monotonic() + 5
                while len(os.listdir(fd_dir)) != baseline and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert len(os.listdir(fd_dir)) == baseline
                rss[i] = proc_status(proc.pid, "VmRSS")
        assert rss[20000] - rss[5000] < 4 * 1024, rss   # kB: no growth per connection
    finally:
        stop_server(proc)


def test_emfile_pauses_accepting_and_recovers(backend):
    """With RLIMIT_NOFILE at 64, a flood exhausts the server's fds; it logs
    that, keeps running, and serves new clients once fds are free."""
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc, port = start_server(ECHO, backend, preexec_fn=low_limit)
    log: list[str] = []
    exhausted = threading.Event()

    def read_log():   # the server's stderr, until it exits
        for line in proc.stderr:
            log.append(line)
            if "accept failed" in line:
                exhausted.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    flood: list[socket.socket] = []
    try:
        start = time.monotonic()
        flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
        assert exhausted.wait(30), "the server never ran out of fds"
        assert proc.poll() is None
        for s in flood:
            s.close()
        # Once its fds are free again, it takes new clients (this one waits
        # in the backlog meanwhile).
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.settimeout(30)
            s.sendall(b"after the flood")
            assert s.recv(100) == b"after the flood"
        paused_at_most = time.monotonic() - start
        assert stop_server(proc) == 0
        reader.join(10)
        text = "".join(log)
        assert "accept failed" in text and "Too many open files" in text, text
        # Paused, not spinning: a retry every ACCEPT_RETRY_DELAY at most,
        # for as long as the fds were short.
        retries = paused_at_most / ACCEPT_RETRY_DELAY
        assert text.count("accept failed") <= retries + 2, (text.count("accept failed"), retries)
    finally:
        for s in flood:
            s.close()
        stop_server(proc)


@pytest.mark.slow
def test_graceful_shutdown_drains_a_large_response(backend):
    proc, port = start_server(["tests/apps/bulk_server.py"], backend)
    try:
        size = 64 * MiB
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET %d\n" % size)
        received = bytearray(sock.recv(64 * 1024))
        proc.send_signal(signal.SIGTERM)     # mid-way through the response
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            received.extend(data)
        block = bytes(range(256))
        assert len(received) == size
        assert received == (block * (size // 256))
        assert proc.wait(10) == 0
        sock.close()
    finally:
        stop_server(proc)


def test_per_operation_deadline(loop):
    fd, client = connected_pair()
    got = []
    start = time.monotonic()
    loop.recv(fd, 100, got.append, timeout=0.2)
    assert loop.run_until(lambda: got, 30.0), "the deadline never fired"
    elapsed = time.monotonic() - start
    assert isinstance(got[0], OSError) and got[0].errno == errno.ETIMEDOUT
    assert elapsed >= 0.19, elapsed   # not before it (the clocks' resolution aside)
    # Data in time: the deadline does not fire.
    loop.recv(fd, 100, got.append, timeout=2.0)
    client.sendall(b"in time")
    assert loop.run_until(lambda: len(got) == 2, 5.0)
    assert got[1] == b"in time"
    loop.run_until(lambda: False, 0.1)
    assert len(got) == 2
    loop.close_fd(fd)
    client.close()


def test_cancelled_recv_completes_with_ecanceled(loop):
    fd, client = connected_pair()
    got = []
    loop.recv(fd, 4096, got.append)
    loop.run_once(0)   # a turn: the receive is under way
    loop.stop_recv(fd)
    assert loop.run_until(lambda: got, 5.0)
    assert isinstance(got[0], OSError) and got[0].errno == errno.ECANCELED
    loop.close_fd(fd)
    client.close()


def test_cancelled_recv_buffer_stays_referenced_until_its_completion(uring_loop):
    loop = uring_loop
    fd, client = connected_pair()
    got = []
    loop.recv(fd, 4096, got.append)
    loop.run_once(0)   # a turn submits it: the kernel owns the buffer
    [op] = [op for op in loop.ops.live() if op.kind == OpKind.RECV]
    buf, pin = op.buf, op.pin
    loop.stop_recv(fd)                    # only asks
    assert op.cancelled and op.buf is buf and op.pin is pin
    assert op in loop.ops.live()
    assert loop.run_until(lambda: got, 5.0)
    assert op not in loop.ops.live() and op.buf is None
    loop.close_fd(fd)
    client.close()


def test_idle_timeout_closes_quiet_connections_only(loop):
    # On the loop's clock, which the test moves by hand (the idle checks
    # read nothing else): a half idle period per step, the busy client
    # sending between steps and the quiet one sending nothing. Only the
    # quiet one is closed, between 1 and 1.5 idle timeouts after it
    # connected -- whatever this machine's speed.
    idle = 10.0
    now = [1000.0]
    loop.time = lambda: now[0]
    protocols = []
    lost = {}

    class Track(Protocol):
        def connection_made(self, conn):
            self.conn = conn
            self.start = now[0]
            protocols.append(self)

        def data_received(self, data):
            self.conn.write(data)

        def connection_lost(self, exc):
            lost[self] = exc

    server = Server(loop, Track, listen("127.0.0.1", 0), idle_timeout=idle).start()
    quiet = socket.create_connection(server.address, timeout=5)
    assert loop.run_until(lambda: len(protocols) == 1, 10.0)
    busy = socket.create_connection(server.address, timeout=5)
    busy.setblocking(False)
    assert loop.run_until(lambda: len(protocols) == 2, 10.0)
    quiet_side, busy_side = protocols
    echoed = bytearray()

    def echoed_back(n: int) -> bool:
        try:
            echoed.extend(busy.recv(100))
        except BlockingIOError:
            pass
        return len(echoed) == n

    closed_after = None
    for step in range(1, 9):   # 4 idle periods
        busy.send(b".")
        assert loop.run_until(lambda step=step: echoed_back(step), 10.0)   # the server saw it
        now[0] += idle / 2
        loop.run_once(0)   # the idle checks due now run
        if closed_after is None and quiet_side.conn.is_closing():
            closed_after = now[0] - quiet_side.start
        assert not busy_side.conn.is_closing(), "the busy connection was closed"
    assert closed_after is not None, "the quiet connection was never closed"
    assert idle <= closed_after <= 1.5 * idle, closed_after
    assert loop.run_until(lambda: quiet_side in lost, 10.0)
    assert isinstance(lost[quiet_side], TimeoutError), lost
    assert busy_side not in lost
    server.close()
    assert loop.run_until(lambda: len(lost) == 2, 10.0)
    quiet.close()
    busy.close()


def wmem_max() -> int:
    with open("/proc/sys/net/core/wmem_max") as f:
        return int(f.read())


class PacedReader(threading.Thread):
    """A client that takes ``chunk`` bytes every ``period`` seconds until
    EOF or an error, whatever this machine's speed: the rate is fixed."""

    def __init__(self, address, chunk: int = 64 * 1024, period: float = 0.04,
                 deadline: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        # A small receive buffer, so the server holds the bytes not yet read.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, chunk)
        self.sock.connect(address)
        self.sock.settimeout(deadline)
        self.chunk, self.period = chunk, period
        self.received = bytearray()
        self.end: object = None     # b"" for a clean EOF, or the error

    def run(self) -> None:
        next_read = time.monotonic()
        try:
            while True:
                data = self.sock.recv(self.chunk)
                if not data:
                    self.end = b""
                    return
                self.received += data
                next_read += self.period
                time.sleep(max(0.0, next_read - time.monotonic()))
        except OSError as exc:
            self.end = exc
        finally:
            self.sock.close()


def stalled_client(address) -> socket.socket:
    """A client that never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(address)
    return sock


def read_to_end(sock: socket.socket) -> object:
    """Drain a socket: b"" if it ends with a FIN, else the error."""
    sock.settimeout(10)
    try:
        while sock.recv(1 << 20):
            pass
        return b""
    except OSError as exc:
        return exc
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("sndbuf", ["default", "max"])
def test_idle_timeout_spares_paced_downloads_and_resets_stalled_ones(loop, sndbuf):
    # Each connection is answered with 12 MiB, written by the application or
    # sent as a file: far more than the socket buffers hold. Two clients read
    # 64 KiB every 40 ms, about 8 s for the whole answer against a 1 s idle
    # timeout; two never read. The paced readers get every byte and then a
    # clean EOF (idle once they have it all); the stalled ones are reset,
    # their answers cut short, well before the paced ones finish.
    idle = 1.0
    payload = os.urandom(12 * MiB)
    path = f"/tmp/uringio-idle-{os.getpid()}"
    with open(path, "wb") as out:
        out.write(payload)
    lost = {}
    sndbufs = []

    class Download(Protocol):
        def connection_made(self, conn):
            self.conn = conn
            self.start = time.monotonic()
            sock = socket.socket(fileno=conn.fd)
            try:
                if sndbuf == "max":   # the kernel doubles what it is given
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wmem_max())
                sndbufs.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
            finally:
                sock.detach()

        def data_received(self, kind):   # which answer the client wants
            self.kind = kind
            if kind == b"f":
                self.conn.sendfile(open(path, "rb"), close=True)
            else:
                self.conn.write(payload)

        def connection_lost(self, exc):
            lost[self.kind, len(lost)] = (time.monotonic() - self.start, exc)

    server = Server(loop, Download, listen("127.0.0.1", 0), idle_timeout=idle).start()
    try:
        readers, stalled = [], []
        for kind in (b"w", b"f"):
            reader = PacedReader(server.address)
            reader.sock.sendall(kind)
            readers.append(reader)
            sock = stalled_client(server.address)
            sock.sendall(kind)
            stalled.append(sock)
        for reader in readers:
            reader.start()
        # The loop runs until the readers have had their EOF: the server's
        # close is submitted by a turn of the loop.
        assert loop.run_until(lambda: not any(r.is_alive() for r in readers), 60.0)
        if sndbuf == "max":
            # A reader slower than the old rule allowed: it saw progress only
            # when a third of the send buffer had drained, per idle period.
            rate = readers[0].chunk / readers[0].period
            assert rate * idle < min(sndbufs) / 3, sndbufs
        for reader in readers:
            reader.join(10)
            assert reader.end == b"", reader.end
            assert len(reader.received) == len(payload) and reader.received == payload
        assert loop.run_until(lambda: len(lost) == 4, 5.0)
        elapsed = sorted(lost.values(), key=lambda v: v[0])
        for stalled_time, exc in elapsed[:2]:
            assert isinstance(exc, TimeoutError), exc
            assert stalled_time < elapsed[2][0] / 2, elapsed   # long before the downloads ended
        for sock in stalled:
            assert isinstance(read_to_end(sock), ConnectionResetError)
    finally:
        server.close()
        loop.run_until(lambda: False, 0.1)
        os.unlink(path)


def test_idle_timeout_closes_a_peer_that_sends_and_never_reads(loop):
    # An echo server pauses reading while its answers back up. A peer that
    # keeps sending and never reads is still idle -- it takes nothing -- and
    # is cut off a little after the idle timeout once its sends stall.
    idle = 0.5
    lost = []

    class Echo(Protocol):
        def connection_made(self, conn):
            self.conn = conn

        def data_received(self, data):
            self.conn.write(data)

        def pause_writing(self):
            self.conn.pause_reading()

        def resume_writing(self):
            self.conn.resume_reading()

        def connection_lost(self, exc):
            lost.append((time.monotonic(), exc))

    server = Server(loop, Echo, listen("127.0.0.1", 0), idle_timeout=idle).start()
    client = stalled_client(server.address)
    client.setblocking(False)
    last_sent, sent, end = time.monotonic(), 0, None
    deadline = last_sent + 30
    try:
        while end is None and time.monotonic() < deadline:
            loop.run_until(lambda: False, 0.01)
            try:
                n = client.send(b"x" * 65536)
            except BlockingIOError:
                continue
            except OSError as exc:   # the reset reaches the sender first
                end = exc
                break
            sent += n
            last_sent = time.monotonic()
        assert loop.run_until(lambda: lost, 10.0)
        [(when, exc)] = lost
        assert isinstance(exc, TimeoutError), exc
        assert sent > 65536
        # Closed within the idle timeout and a half of its last act, plus
        # a turn's delay: 3 idle periods is a wide margin.
        assert when - last_sent < 3 * idle, when - last_sent
        assert isinstance(end, ConnectionResetError), end
    finally:
        server.close()
        client.close()
        loop.run_until(lambda: False, 0.1)


def test_abort_with_unsent_data_resets_and_close_does_not(loop):
    payload = os.urandom(8 * MiB)   # more than the socket buffers hold
    lost = []

    class Answer(Protocol):
        def connection_made(self, conn):
            conn.write(payload)
            self.conn = conn

        def connection_lost(self, exc):
            lost.append(exc)

        def data_received(self, data):
            if data == b"abort":
                self.conn.abort()
            else:
                self.conn.close()

    server = Server(loop, Answer, listen("127.0.0.1", 0)).start()
    try:
        ends = {}
        for how in (b"abort", b"close"):
            client = stalled_client(server.address)
            client.sendall(how)
            if how == b"close":
                # close() waits for the queued bytes: they all come, then EOF.
                reader = threading.Thread(
                    target=lambda client=client: ends.update(close=recv_all(client)))
                reader.start()
                loop.run_until(lambda reader=reader: not reader.is_alive(), 30.0)
                reader.join(5)
            else:
                assert loop.run_until(lambda: lost, 5.0)
                loop.run_until(lambda: False, 0.05)   # a turn submits the close
                ends["abort"] = read_to_end(client)
        assert isinstance(ends["abort"], ConnectionResetError), ends["abort"]
        assert ends["close"] == payload
    finally:
        server.close()
        loop.run_until(lambda: False, 0.1)


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def test_pause_and_resume_reading_lose_nothing(loop):
    received = []
    conns = []

    class Pausing(Protocol):
        def connection_made(self, conn):
            conns.append(conn)

        def data_received(self, data):
            received.append(data)
            conns[0].pause_reading()
            loop.call_later(0.001, conns[0].resume_reading)

    server = Server(loop, Pausing, listen("127.0.0.1", 0)).start()
    client = socket.create_connection(server.address, timeout=5)
    payload = os.urandom(2 * MiB)
    pusher = threading.Thread(target=client.sendall, args=(payload,))
    pusher.start()
    assert loop.run_until(lambda: sum(map(len, received)) >= len(payload), 30.0)
    pusher.join(10)
    assert b"".join(received) == payload
    server.close()
    client.close()


def test_cq_overflow_loses_no_completion():
    """A ring whose CQ holds 16 entries, 500 operations completing at once."""
    from conftest import skip_unless_uring
    skip_unless_uring()
    from uringio._core.uring.ring import Ring
    ring = Ring(8, cq_entries=16)
    try:
        for ud in range(1, 501):
            ring.prep_nop(ud, 0)
        got = []
        for _ in range(200):
            cqes = ring.submit_and_wait(0)
            got += cqes[0::3]
            if len(got) >= 500:
                break
        assert sorted(got) == list(range(1, 501))
    finally:
        ring.close()


def test_cq_overflow_under_a_loop_loses_no_data():
    from conftest import skip_unless_uring
    skip_unless_uring()
    loop = open_loop("uring", entries=8, cq_entries=16)
    try:
        class Echo(Protocol):
            def connection_made(self, conn):
                self.write = conn.write

            def data_received(self, data):
                self.write(data)

        server = Server(loop, Echo, listen("127.0.0.1", 0)).start()
        clients = [socket.create_connection(server.address, timeout=5) for _ in range(100)]
        for c in clients:
            c.setblocking(False)
        loop.run_until(lambda: len(server.connections) == 100, 5.0)
        for i, c in enumerate(clients):
            c.send(b"%04d" % i * 10)
        got = [b""] * 100

        def all_back():
            for i, c in enumerate(clients):
                try:
                    got[i] += c.recv(100)
                except BlockingIOError:
                    pass
            return all(len(g) >= 40 for g in got)

        assert loop.run_until(all_back, 10.0)
        assert got == [b"%04d" % i * 10 for i in range(100)]
        server.close()
        for c in clients:
            c.close()
    finally:
        loop.close()
