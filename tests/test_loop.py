"""Callbacks, timers, thread-safe wakeup, run/stop and backend selection."""

import contextlib
import logging
import signal
import socket
import threading
import time

import pytest

import uringio
from conftest import raised_in_thread, readable, signal_off_the_main_thread
from uringio import BusyResourceError, LoopClosedError, UringUnavailable, open_loop


def test_call_soon_runs_in_order_and_stop_ends_run(loop):
    seen = []
    loop.call_soon(seen.append, 1)
    loop.call_soon(seen.append, 2)
    loop.call_soon(loop.stop)
    loop.run()
    assert seen == [1, 2]


def test_call_later_order_and_cancel(loop):
    seen = []
    start = time.monotonic()
    loop.call_later(0.05, seen.append, "b")
    loop.call_later(0.01, seen.append, "a")
    loop.call_later(0.02, seen.append, "never").cancel()
    loop.call_later(0.08, loop.stop)
    loop.run()
    assert seen == ["a", "b"]
    assert 0.07 <= time.monotonic() - start < 2.0


def test_a_cancelled_timer_lets_go_of_its_callback_at_once(loop):
    # A connection closed long before its timeout: what the timer would have
    # called (the protocol, and all it holds) is freed at the cancel, not
    # when the timeout would have come; and cancelled timers do not pile up.
    import gc
    import weakref

    class Protocol:
        def timed_out(self):
            raise AssertionError("a cancelled timer fired")

    held = []
    for _ in range(1000):
        protocol = Protocol()
        held.append(weakref.ref(protocol))
        loop.call_later(3600, protocol.timed_out).cancel()
        del protocol
    gc.collect()
    assert all(ref() is None for ref in held)
    assert len(loop._timers) <= 2 * 64 + 1   # dropped whenever most are cancelled
    keep = loop.call_later(0, loop.stop)
    loop.run()
    assert keep.loop is None and not keep._cancelled


def test_call_soon_threadsafe_wakes_a_waiting_loop(loop):
    seen = []
    thread = threading.Thread(target=lambda: (time.sleep(0.1),
                                             loop.call_soon_threadsafe(seen.append, "x"),
                                             loop.call_soon_threadsafe(loop.stop)))
    # Only the thread's calls can end the loop's wait before this timer,
    # which says so if it is what ended it.
    watchdog = loop.call_later(60.0, lambda: (seen.append("watchdog"), loop.stop()))
    thread.start()
    loop.run()
    thread.join()
    watchdog.cancel()
    assert seen == ["x"]


def test_a_raising_callback_is_logged_and_the_loop_goes_on(loop, caplog):
    seen = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(seen.append, "after")
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="uringio"):
        loop.run()
    assert seen == ["after"]
    assert "ZeroDivisionError" in caplog.text


def test_closed_loop_refuses_work(backend):
    loop = open_loop(backend)
    loop.close()
    loop.close()  # idempotent
    with pytest.raises(LoopClosedError):
        loop.run()
    with pytest.raises(LoopClosedError):
        loop.start_recv(0, print)


def test_backend_names(backend):
    loop = open_loop(backend)
    try:
        assert loop.backend == backend
    finally:
        loop.close()


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 'auto', 'uring' or 'epoll'"):
        open_loop("kqueue")


def test_auto_falls_back_to_epoll_with_one_log_line(monkeypatch, caplog):
    import uringio._core.uring.loop as proactor

    def refuse(*args, **kwargs):
        raise UringUnavailable(1, "io_uring is disabled here (sysctl kernel.io_uring_disabled); "
                                  "use --backend epoll")

    monkeypatch.setattr(proactor, "ProactorLoop", refuse)
    with caplog.at_level(logging.WARNING, logger="uringio"):
        loop = open_loop("auto")
    try:
        assert loop.backend == "epoll"
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "io_uring unavailable" in lines[0] and "kernel.io_uring_disabled" in lines[0]
    with pytest.raises(UringUnavailable, match="use --backend epoll"):
        open_loop("uring")


def test_ring_setup_failure_names_the_cause_and_fix(monkeypatch):
    from conftest import skip_or_fail
    from uringio._core.uring import ring as ring_mod
    if ring_mod.lib is None:
        skip_or_fail("binding not built")

    real = ring_mod.lib

    class FakeLib:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def uio_queue_init(*args):
            return -12  # ENOMEM, as with a low RLIMIT_MEMLOCK

    monkeypatch.setattr(ring_mod, "lib", FakeLib())
    with pytest.raises(UringUnavailable) as info:
        ring_mod.Ring(8)
    assert info.value.errno == 12
    assert "RLIMIT_MEMLOCK" in str(info.value) and "--backend epoll" in str(info.value)


def test_public_api_exports():
    assert set(uringio.BACKENDS) == {"auto", "uring", "epoll"}


def _served_connection(loop):
    """A Server on ``loop`` with one accepted connection: (server, conn, client)."""
    import socket

    from uringio import Protocol, Server, listen
    conns = []

    class Keep(Protocol):
        def connection_made(self, conn):
            conns.append(conn)

    server = Server(loop, Keep, listen("127.0.0.1", 0)).start()
    client = socket.create_connection(server.address, timeout=5)
    assert loop.run_until(lambda: conns, 5.0)
    return server, conns[0], client


def test_a_closed_loop_refuses_to_run_and_its_connections_refuse_writes(backend):
    loop = open_loop(backend)
    server, conn, client = _served_connection(loop)
    conn.write(b"before")
    assert loop.run_until(lambda: False, 0.05) is False
    assert loop.run_until(lambda: readable(client), 10.0)
    assert client.recv(16) == b"before"
    loop.close()
    with pytest.raises(LoopClosedError):
        loop.run_until(lambda: True, 1.0)
    with pytest.raises(LoopClosedError):
        loop.run()
    with pytest.raises(RuntimeError, match="closed"):
        conn.write(b"after")
    server.sock.close()
    client.close()


def test_a_write_from_another_thread_is_refused(loop):
    server, conn, client = _served_connection(loop)
    exc = raised_in_thread(lambda: conn.write(b"from another thread"))
    assert isinstance(exc, RuntimeError) and "thread other than its loop's" in str(exc)
    assert conn.get_write_buffer_size() == 0   # nothing of it was queued
    # The loop's own thread still writes.
    conn.write(b"ok")
    assert loop.run_until(lambda: readable(client), 10.0)
    assert client.recv(16) == b"ok"
    server.close()
    loop.run_until(lambda: not server.connections, 5.0)
    client.close()


def test_a_uring_loop_runs_only_in_the_thread_that_made_it(uring_loop):
    exc = raised_in_thread(lambda: uring_loop.run_until(lambda: True, 1.0))
    assert isinstance(exc, RuntimeError) and "thread that created it" in str(exc)
    assert uring_loop.run_until(lambda: True, 1.0)   # its own thread still may


def test_run_until_refuses_to_nest(loop):
    errors = []

    def nested():
        try:
            loop.run_until(lambda: True, 1.0)
        except RuntimeError as exc:
            errors.append(exc)

    loop.call_soon(nested)
    loop.run_until(lambda: errors, 2.0)
    assert "already running" in str(errors[0])


def test_timers_follow_the_loop_clock_so_tests_need_no_sleeps(loop):
    # Every timer reads the loop's time() and nothing else: a test that
    # replaces it moves an hour in no time.
    now = [1000.0]
    loop.time = lambda: now[0]
    fired = []
    loop.call_later(3600, fired.append, "hour")
    loop.call_later(60, fired.append, "minute")
    loop.call_later(60, fired.append, "cancelled").cancel()
    loop.run_until(lambda: False, 0.02)
    assert fired == []
    now[0] += 60
    assert loop.run_until(lambda: fired, 1.0)
    assert fired == ["minute"]
    now[0] += 3540
    assert loop.run_until(lambda: len(fired) == 2, 1.0)
    assert fired == ["minute", "hour"]


def test_a_signal_ends_the_wait_however_it_lands(loop):
    # The handler must run even when the signal does not interrupt the
    # wait (here: another thread takes it). Had the signal not woken the
    # loop, the timer would end the wait, and both would run in that turn.
    stopped_by = []

    def stop(by: str) -> None:
        stopped_by.append(by)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, stop, "signal")
    loop.call_later(10, stop, "timer")
    with signal_off_the_main_thread(signal.SIGUSR1):
        loop.run()
    loop.remove_signal_handlers()
    assert stopped_by == ["signal"]
    assert signal.set_wakeup_fd(-1) == -1   # put back as it was


def test_a_watch_for_one_report_ends_after_it(loop):
    # watch(once=True): one report, then nothing more however long the fd
    # stays readable; the same fd can be watched again at once (a second
    # watch on a live one is refused).
    a, b = socket.socketpair()
    with a, b:
        reports: list = []
        loop.watch(a.fileno(), False, reports.append, once=True)
        with pytest.raises(BusyResourceError):
            loop.watch(a.fileno(), False, reports.append)
        b.send(b"x")
        assert loop.run_until(lambda: reports, 5)
        for _ in range(5):
            loop.run_once(0.01)   # still readable: a level watch would report again
        assert reports == [0] and not loop.unwatch(a.fileno(), False)
        loop.watch(a.fileno(), False, reports.append, once=True)   # again
        assert loop.run_until(lambda: len(reports) == 2, 5)
        # A writable wait, and one cancelled before it reports.
        loop.watch(a.fileno(), True, reports.append, once=True)
        assert loop.run_until(lambda: len(reports) == 3, 5)
        c, d = socket.socketpair()
        with c, d:
            loop.watch(c.fileno(), False, reports.append, once=True)
            assert loop.unwatch(c.fileno(), False)
            d.send(b"x")
            for _ in range(5):
                loop.run_once(0.01)
        assert reports == [0, 0, 0]


def test_a_write_watch_on_a_half_closed_socket_waits_for_room(loop):
    # The peer shut its side (POLLRDHUP lasts) and reads nothing: the
    # buffer is full, so nothing is reported, turn after turn -- io_uring
    # adds POLLRDHUP to every poll, which would report at once each time.
    # Once the peer reads, the watch reports. Level and one-shot watches.
    for once in (False, True):
        a, b = socket.socketpair()
        with a, b:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 10000)
            a.setblocking(False)
            with pytest.raises(BlockingIOError):
                while True:
                    a.send(bytes(4096))
            b.shutdown(socket.SHUT_WR)
            reports: list = []
            loop.watch(a.fileno(), True, reports.append, once=once)
            for _ in range(5):
                loop.run_once(0.02)
            assert reports == []
            b.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while b.recv(1 << 16):
                    pass
            assert loop.run_until(lambda: reports != [], 5)   # noqa: B023 -- (run at once)
            assert reports[0] == 0 and a.send(b"room") == 4
            if not once:
                assert loop.unwatch(a.fileno(), True)
            assert not loop.unwatch(a.fileno(), True)
