"""The server models on both backends: single, pool, multi, threads."""

import os
import signal
import socket
import threading
import time

from conftest import start_server, stop_server, threads_of, wait_for
from uringio import Protocol, Server, blocking, listen
from uringio.models.pool import WorkerPool

SERVE = ["-m", "uringio", "serve", "--host", "127.0.0.1", "--port", "0"]


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def ask_pid(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"?")
        return int(s.recv(100))


def test_pool_runs_blocking_work_in_parallel(backend):
    # Twenty calls whose blocking work lasts an hour. The pool starts a
    # thread only when none is idle: twenty threads busy together show all
    # twenty calls in flight at the same time, whatever this machine's
    # speed. Run one at a time, or inline on the loop, they never need a
    # second thread.
    proc, port = start_server([*SERVE, "echo", "--model", "pool", "--threads", "20",
                               "--work-ms", str(3600 * 1000)], backend)
    clients = []
    try:
        before = threads_of(proc.pid)
        for i in range(20):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            clients[-1].sendall(b"client %02d" % i)
        assert wait_for(lambda: threads_of(proc.pid) == before + 20), threads_of(proc.pid) - before
    finally:
        for client in clients:
            client.close()
        stop_server(proc, signal.SIGKILL)   # the calls would not end by themselves


def test_pool_answers_calls_that_only_return_together(loop):
    # Each call waits at a barrier that all of them must reach before any
    # returns: they are answered only if the pool runs them all at once.
    n = 8
    barrier = threading.Barrier(n, timeout=30)

    class MeetThenUpper(Protocol):
        def connection_made(self, conn):
            pass

        @blocking
        def data_received(self, data):
            barrier.wait()
            return data.upper()

    pool = WorkerPool(loop, n)
    server = Server(loop, MeetThenUpper, listen("127.0.0.1", 0), pool=pool).start()
    clients = [socket.create_connection(server.address, timeout=5) for _ in range(n)]
    replies = [b""] * n
    for i, client in enumerate(clients):
        client.sendall(b"call %d" % i)
        client.setblocking(False)

    def all_answered():
        for i, client in enumerate(clients):
            try:
                replies[i] += client.recv(100)
            except BlockingIOError:
                pass
        return all(len(reply) >= len(b"CALL 0") for reply in replies)

    try:
        # A barrier that timed out (calls run fewer at a time) ends the wait.
        assert loop.run_until(lambda: all_answered() or barrier.broken, 60.0), replies
        assert not barrier.broken, "the calls did not all run at once"
        assert replies == [b"CALL %d" % i for i in range(n)]
    finally:
        barrier.abort()   # frees any call still waiting, so the pool can shut down
        server.close()
        for client in clients:
            client.close()
        pool.shutdown()


def test_single_model_runs_blocking_work_inline(backend):
    proc, port = start_server([*SERVE, "echo", "--work-ms", "50"], backend)
    try:
        start = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for s in socks:
            s.sendall(b"x")
        for s in socks:
            assert s.recv(10) == b"x"
            s.close()
        assert time.monotonic() - start >= 5 * 0.05 * 0.9   # one at a time, on the loop
    finally:
        stop_server(proc)


def test_pool_keeps_each_connections_order(loop):
    class SleepThenEcho(Protocol):
        def connection_made(self, conn):
            pass

        @blocking
        def data_received(self, data):
            time.sleep(int(data[:2]) / 1000)   # the first chunk is the slowest
            return data

    pool = WorkerPool(loop, 8)
    server = Server(loop, SleepThenEcho, listen("127.0.0.1", 0), pool=pool).start()
    client = socket.create_connection(server.address, timeout=5)
    client.setblocking(False)
    received = bytearray()
    expected = b""
    for delay in (60, 40, 20, 1):
        chunk = b"%02d;" % delay
        expected += chunk
        client.send(chunk)
        loop.run_until(lambda: False, 0.005)   # separate chunks on the server

    def all_back():
        try:
            received.extend(client.recv(100))
        except BlockingIOError:
            pass
        return len(received) >= len(expected)

    assert loop.run_until(all_back, 5.0)
    assert bytes(received) == expected
    server.close()
    client.close()
    pool.shutdown()


def test_multi_spreads_connections_over_worker_processes(backend):
    proc, port = start_server([*SERVE, "whoami", "--model", "multi", "--workers", "2"], backend)
    try:
        workers = children(proc.pid)
        assert len(workers) == 2
        seen = set()
        for _ in range(200):
            seen.add(ask_pid(port))
            if len(seen) == 2:
                break
        assert seen == workers
    finally:
        assert stop_server(proc) == 0


def test_multi_restarts_a_killed_worker_and_stops_cleanly(backend):
    proc, port = start_server([*SERVE, "whoami", "--model", "multi", "--workers", "2"], backend)
    try:
        before = children(proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            now = children(proc.pid)
            return len(now) == 2 and victim not in now

        assert wait_for(replaced), children(proc.pid)
        now = children(proc.pid)
        assert victim not in now and len(now) == 2
        assert ask_pid(port) in now   # still served
        rc = stop_server(proc)
        assert rc == 0
        for pid in now:
            assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} left behind"
    finally:
        stop_server(proc)


def test_threads_model_serves_the_same_protocols():
    proc, port = start_server([*SERVE, "echo", "--model", "threads"], "auto")
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        for i, s in enumerate(socks):
            s.sendall(b"thread %d" % i)
        for i, s in enumerate(socks):
            assert s.recv(100) == b"thread %d" % i
        assert len(os.listdir(f"/proc/{proc.pid}/task")) >= 10 + 1   # a thread each
        for s in socks:
            s.close()
        assert stop_server(proc) == 0
    finally:
        stop_server(proc)


def test_a_worker_is_forked_between_log_lines():
    # Another thread is in the middle of a log line -- its stream blocked,
    # a pipe nobody reads yet holding less than the line -- when the
    # supervisor forks a worker. The fork waits for the line; the worker
    # can then write its own (forked in the middle, it would wait forever
    # for the stream's lock the other thread held).
    import fcntl
    import logging
    import termios

    from uringio.models.supervisor import fork_between_log_lines

    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("uringio.test-fork")
    logger.addHandler(handler)
    logger.propagate = False
    writer = threading.Thread(target=logger.error, args=("x" * (1 << 20),))
    writer.start()

    def pending() -> int:
        return int.from_bytes(fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0"), "little")

    got = bytearray()

    def drain() -> None:   # from a moment after the fork began: the line can end
        time.sleep(0.3)
        while chunk := os.read(r, 1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        assert wait_for(lambda: pending() >= 4096 and writer.is_alive(), 10.0)
        reader.start()
        pid = fork_between_log_lines()
        if pid == 0:
            code = 1
            try:
                logger.error("the worker's line")
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10.0
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        if not done[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert done[0] and os.waitstatus_to_exitcode(done[1]) == 0, "the worker hung at its log"
        writer.join(10.0)
    finally:
        logger.removeHandler(handler)
        stream.close()
        reader.join(10.0)
        os.close(r)
    assert got.endswith(b"the worker's line\n") and got.count(b"x") == 1 << 20
