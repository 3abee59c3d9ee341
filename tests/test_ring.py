"""The binding and Ring, straight against the kernel (uring only)."""

import errno
import os

import pytest

from conftest import _URING_SKIP

pytestmark = pytest.mark.skipif(bool(_URING_SKIP), reason=f"io_uring unavailable: {_URING_SKIP}")


@pytest.fixture
def ring():
    from uringio._core.ring import Ring
    r = Ring(64)
    yield r
    r.close()


def triples(flat):
    return [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]


def test_setup_flags_and_probe(ring):
    feats = ring.probe()
    assert ring.setup_flags in (("SINGLE_ISSUER", "DEFER_TASKRUN"),
                                ("COOP_TASKRUN", "TASKRUN_FLAG"), ())
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
    from uringio._core.ring import ffi
    ts = ffi.new("struct __kernel_timespec *", {"tv_sec": 0, "tv_nsec": 20_000_000})
    assert ring.prep_timeout(ts, 0, 0, 7) == 0
    got = triples(ring.submit_and_wait(1, timeout=2.0))
    assert got == [(7, -errno.ETIME, 0)]


def test_cancel64_cancels_a_pending_timeout(ring):
    from uringio._core.ring import ffi
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
    from uringio._core.ring import Ring
    r = Ring(8)
    fd = r.fd
    assert os.path.exists(f"/proc/self/fd/{fd}")
    r.close()
    assert (not os.path.exists(f"/proc/self/fd/{fd}")
            or os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[io_uring]")
    r.close()  # idempotent


def test_buffer_ring_registers_and_copies_out(ring):
    from uringio._core.buffers import BufRing
    br = BufRing(ring, entries=8, size=4096)
    assert br.take(0, 0) == b""
    br.close()
    with pytest.raises(OSError):
        BufRing(ring, entries=3, size=4096)  # not a power of two


def test_buffer_ring_starts_with_few_buffers_and_grows_to_all(ring):
    # Few buffers in circulation keep the kernel's copies cache-warm; each
    # grow doubles them (the loop grows on -ENOBUFS) up to the ring's size.
    from uringio._core.buffers import BufRing
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

    from uringio._core.buffers import BufRing
    from uringio._core.ring import lib
    a, b = socket.socketpair()
    br = BufRing(ring, entries=8, size=16, initial=2, bgid=3)
    try:
        b.sendall(b"x" * 64)
        time.sleep(0.05)
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
