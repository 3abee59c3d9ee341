"""The binding and Ring, straight against the kernel (uring only)."""

import errno
import os
import time

import pytest

from conftest import needs_uring

pytestmark = needs_uring


@pytest.fixture
def ring(uring_available):
    from uringio._core.uring.ring import Ring
    r = Ring(64)
    yield r
    r.close()


def triples(flat):
    return [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]


def _kernel_takes(names: tuple[str, ...]) -> bool:
    """Whether this kernel sets up a ring with the setup flags ``names``,
    asked of it directly rather than through Ring."""
    from uringio._core.uring.ring import ffi, lib
    ring = ffi.new("struct io_uring *")
    flags = 0
    for name in names:
        flags |= getattr(lib, "IORING_SETUP_" + name)
    err = lib.uio_queue_init(ring, 8, 32, flags, ffi.new("unsigned *"))
    if err == 0:
        lib.uio_queue_exit(ring)
        return True
    assert err == -errno.EINVAL, os.strerror(-err)   # flags it does not know
    return False


def _fdinfo(fd: int) -> dict[str, str]:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_setup_takes_the_best_flags_this_kernel_has_and_the_sizes_asked(ring):
    # Best first: deferred task work for the one thread that submits (6.1+),
    # else cooperative task work (5.19+), else none. The ring must be set
    # up with the first of these the kernel takes.
    best = next(names for names in (("SINGLE_ISSUER", "DEFER_TASKRUN"),
                                    ("COOP_TASKRUN", "TASKRUN_FLAG"), ())
                if _kernel_takes(names))
    assert ring.setup_flags == best
    # The kernel's own account of the queues: 64 SQ entries, 4 x 64 CQEs
    # by default, or as many CQEs as asked.
    info = _fdinfo(ring.fd)
    assert (int(info["SqMask"], 16) + 1, int(info["CqMask"], 16) + 1) == (64, 256), info
    from uringio._core.uring.ring import Ring
    other = Ring(8, cq_entries=64)
    try:
        info = _fdinfo(other.fd)
        assert (int(info["SqMask"], 16) + 1, int(info["CqMask"], 16) + 1) == (8, 64), info
    finally:
        other.close()


def test_probe_finds_the_opcodes_the_loop_needs(ring):
    feats = ring.probe()
    for name in ("ACCEPT", "RECV", "SEND", "CLOSE", "TIMEOUT", "ASYNC_CANCEL", "NOP"):
        assert feats.opcodes[name], name


def test_nops_complete_in_one_batch_with_their_user_data(ring):
    for ud in range(1, 41):
        assert ring.prep_nop(ud, 0) == 0
    got = []
    while len(got) < 40:
        got += triples(ring.submit_and_wait(1, timeout=2.0))
    assert sorted(ud for ud, _res, _flags in got) == list(range(1, 41))
    assert all(res == 0 for _ud, res, _flags in got)


def test_full_sq_is_flushed_not_lost(ring):
    # 64 SQ entries; 300 preps must all go through (the helper submits when full).
    for ud in range(1, 301):
        assert ring.prep_nop(ud, 0) == 0
    got = []
    for _ in range(100):
        got += triples(ring.submit_and_wait(0 if len(got) else 1, timeout=1.0))
        if len(got) >= 300:
            break
    assert sorted(ud for ud, *_ in got) == list(range(1, 301))


def test_timeout_op_expires_with_etime(ring):
    from uringio._core.uring.ring import ffi
    ts = ffi.new("struct __kernel_timespec *", {"tv_sec": 0, "tv_nsec": 20_000_000})
    assert ring.prep_timeout(ts, 0, 0, 7) == 0
    # A signal to this process (another test's, late) ends a wait early
    # with nothing, as documented: wait again, within the same bound.
    deadline = time.monotonic() + 2.0
    got = []
    while not got and time.monotonic() < deadline:
        got = triples(ring.submit_and_wait(1, timeout=max(0.0, deadline - time.monotonic())))
    assert got == [(7, -errno.ETIME, 0)]


def test_cancel64_cancels_a_pending_timeout(ring):
    from uringio._core.uring.ring import ffi
    ts = ffi.new("struct __kernel_timespec *", {"tv_sec": 10, "tv_nsec": 0})
    ring.prep_timeout(ts, 0, 0, 9)
    ring.submit()
    ring.prep_cancel64(9, 0, 10, 0)
    got = []
    while len(got) < 2:
        got += triples(ring.submit_and_wait(1, timeout=2.0))
    assert dict((ud, res) for ud, res, _ in got) == {9: -errno.ECANCELED, 10: 0}


def test_wait_with_timeout_returns_empty(ring):
    assert ring.submit_and_wait(1, timeout=0.01) == []


def test_close_releases_the_ring_fd():
    from uringio._core.uring.ring import Ring
    r = Ring(8)
    fd = r.fd
    assert os.path.exists(f"/proc/self/fd/{fd}")
    r.close()
    assert (not os.path.exists(f"/proc/self/fd/{fd}")
            or os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[io_uring]")
    r.close()  # idempotent


def test_buffer_ring_registers_and_copies_out(ring):
    # Registered: the kernel picks buffers from it for a receive; and take()
    # copies out of the buffer each CQE names the bytes it reported (at an
    # offset in it, when the kernel consumes buffers piece by piece).
    import socket

    from uringio._core.uring.buffers import BufRing
    from uringio._core.uring.ring import lib
    a, b = socket.socketpair()
    br = BufRing(ring, entries=8, size=4096, bgid=5)
    try:
        ring.prep_recv_multishot(a.fileno(), 5, 0, 11)
        for message in (b"first message", b"and a second, longer one", b"3"):
            b.sendall(message)
            [(ud, res, flags)] = triples(ring.submit_and_wait(1, timeout=5.0, bufring=br))
            assert ud == 11 and res == len(message), (ud, res)
            assert flags & lib.IORING_CQE_F_BUFFER and flags & lib.IORING_CQE_F_MORE
            assert br.take(flags, res) == message
    finally:
        br.close()
        a.close()
        b.close()
    with pytest.raises(OSError):
        BufRing(ring, entries=3, size=4096)  # not a power of two


def test_buffer_ring_starts_with_few_buffers_and_grows_to_all(ring):
    # Few buffers in circulation keep the kernel's copies cache-warm; each
    # grow doubles them (the loop grows on -ENOBUFS) up to the ring's size.
    from uringio._core.uring.buffers import BufRing
    br = BufRing(ring, entries=64, size=512, initial=4)
    try:
        assert br.in_circulation == 4
        added = [br.grow() for _ in range(5)]
        assert added == [4, 8, 16, 32, 0]
        assert br.in_circulation == 64
    finally:
        br.close()


def test_recv_uses_only_the_buffers_in_circulation(ring):
    # With 2 buffers in circulation of 8, a multishot recv picks ids 0 and 1
    # and then runs dry: buffers not yet added are never handed out.
    import socket
    import time

    from uringio._core.uring.buffers import BufRing
    from uringio._core.uring.ring import lib
    a, b = socket.socketpair()
    br = BufRing(ring, entries=8, size=16, initial=2, bgid=3)
    try:
        b.sendall(b"x" * 64)   # in a's receive queue once it returns
        ring.prep_recv_multishot(a.fileno(), 3, 0, 7)
        ids, results = [], []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not results or results[-1] != -errno.ENOBUFS):
            cqes = ring.submit_and_wait(1, 1.0)
            for i in range(0, len(cqes), 3):
                results.append(cqes[i + 1])
                if cqes[i + 2] & lib.IORING_CQE_F_BUFFER:
                    ids.append(cqes[i + 2] >> lib.IORING_CQE_BUFFER_SHIFT)
        assert results[-1] == -errno.ENOBUFS
        assert sorted(ids) == [0, 1]
    finally:
        br.close()
        a.close()
        b.close()
