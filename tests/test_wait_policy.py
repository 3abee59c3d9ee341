"""How a loop waits: it sleeps in the kernel when nothing is ready (never
spins), and on uring a clump of file-read completions that woke it is
handed out a few CQEs per turn, so that each turn submits the reads the
last few readers made (struct uio_pace in _build/_core/uring_helpers.c)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import needs_uring, wait_for
from uringio._core import open_loop


@pytest.fixture
def ring(uring_available):
    from uringio._core.uring.ring import Ring
    r = Ring(64)
    r.pace_chunk = 2
    yield r
    r.close()


def _waiting_in_io_uring_enter(tid: int) -> bool:
    """Whether thread ``tid`` of this process is blocked in io_uring_enter(2)
    (426 on x86_64 and aarch64): /proc says "running" for one on a CPU."""
    with open(f"/proc/self/task/{tid}/syscall") as f:
        return f.read().split()[0] == "426"


def _user_data(ring, n: int) -> list[int]:
    return [ring.cqe(i)[0] for i in range(n)]


@needs_uring
def test_a_clump_that_woke_the_ring_is_handed_out_chunk_by_chunk(ring):
    ts = ring.timespec(0.02)   # referenced until the timeouts are over
    for ud in range(100, 116):
        assert ring.prep_timeout(ts, 0, 0, ud) == 0
    # Nothing is ready: the turn sleeps until the first timeout fires.
    first = ring.turn(1, 5.0, None, clump=16)
    assert 1 <= first <= 2 and ring.pace_clumps == 1
    got = _user_data(ring, first)
    time.sleep(0.1)   # by now every timeout has fired: the rest of the clump waits
    sizes = []
    while len(got) < 16:
        n = ring.turn(1, 5.0, None, clump=16)
        sizes.append(n)
        got += _user_data(ring, n)
    assert sizes[0] == 2 and max(sizes) == 2
    assert sorted(got) == list(range(100, 116))


@needs_uring
def test_without_a_clump_in_flight_a_turn_takes_everything(ring):
    ts = ring.timespec(0.02)
    for ud in range(100, 116):
        assert ring.prep_timeout(ts, 0, 0, ud) == 0
    ring.submit()
    time.sleep(0.1)
    assert ring.turn(1, 5.0, None) == 16 and ring.pace_clumps == 0


@needs_uring
def test_completions_ready_without_a_sleep_are_not_paced(ring):
    # As page-cache reads are: done inline while they are submitted.
    for ud in range(1, 17):
        assert ring.prep_nop(ud, 0) == 0
    assert ring.turn(1, 5.0, None, clump=16) == 16
    assert ring.pace_clumps == 0


@needs_uring
def test_the_loop_paces_what_its_file_reads_woke_it_for():
    loop = open_loop("uring", pace_chunk=1)
    pipes = [os.pipe() for _ in range(4)]
    try:
        heard: list = []
        for r, _w in pipes:
            loop.file_read(r, bytearray(1), -1, heard.append)
        loop.run_once(0)
        assert loop._ring.pace_clumps == 0
        loop_thread = threading.get_native_id()

        def write_once_the_loop_sleeps():
            # The data comes while the loop waits in the kernel for it,
            # however late this thread runs.
            if wait_for(lambda: _waiting_in_io_uring_enter(loop_thread)):
                for _r, w in pipes:
                    os.write(w, b"x")

        writer = threading.Thread(target=write_once_the_loop_sleeps)
        writer.start()
        assert loop.run_until(lambda: len(heard) == 4, 60.0)
        writer.join()
        assert heard == [1, 1, 1, 1]
        assert loop._ring.pace_clumps >= 1
    finally:
        loop.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)


@pytest.mark.parametrize("with_read", [False, True], ids=["nothing", "a read in flight"])
def test_an_idle_loop_sleeps(backend, with_read):
    # A loop with nothing to do -- also one waiting for a file read that
    # does not come -- uses next to no CPU: it sleeps in the kernel.
    if with_read and backend != "uring":
        pytest.skip("the epoll backend reads on its worker pool, not in the loop")
    loop = open_loop(backend)
    r, w = os.pipe()
    try:
        if with_read:
            loop.file_read(r, bytearray(1), -1, lambda res: None)
        loop.run_once(0)
        cpu = time.thread_time()
        loop.run_until(lambda: False, 1.0)
        assert time.thread_time() - cpu < 0.2
    finally:
        os.write(w, b"x")   # the read is over before the close
        loop.close()
        os.close(r)
        os.close(w)
