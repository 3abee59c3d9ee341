"""The uring backend's C per-message paths (_build/_core/fastpath.c), fed synthetic
CQEs: the dispatcher must make exactly the decisions the loop promises, and
survive handlers that raise or rewire their op while they run; and none of
the C types may crash, whatever Python does with them."""

import gc
import subprocess
import sys
import threading

import pytest

from conftest import raised_in_thread, skip_or_fail
from uringio._core.uring import ring as ring_mod
from uringio._core.uring.ops import Op, OpKind

if ring_mod.Dispatcher is None:
    skip_or_fail("binding not built", allow_module_level=True)

from uringio._core import _fastpath  # noqa: E402

ffi = ring_mod.ffi
F_MORE = ring_mod.IORING_CQE_F_MORE
SHIFT = ring_mod.IORING_CQE_BUFFER_SHIFT
BUF_SIZE, BUF_COUNT = 32, 4


class Fixture:
    """An op table, a buffer area and a CQE array, as the loop has them."""

    def __init__(self, nops: int = 4) -> None:
        self.events = []
        self.slots = [Op(i) for i in range(nops)]
        for op in self.slots:
            op.kind = int(OpKind.RECV_STREAM)
            op.handler = lambda data, op=op: self.events.append(("data", op.id, data))
            op.on_complete = lambda op, res, flags: self.events.append(
                ("complete", op.id, res, flags))
        self.bufs = ffi.new("char[]", BUF_SIZE * BUF_COUNT)
        for bid in range(BUF_COUNT):
            ffi.memmove(self.bufs + bid * BUF_SIZE, bytes([65 + bid]) * BUF_SIZE, BUF_SIZE)
        self.cqes = ffi.new("int64_t[]", 3 * 64)
        self.writers = ffi.gc(ring_mod.lib.uio_writers_new(5), ring_mod.lib.uio_writers_destroy)
        self.memory = ring_mod.RingMemory(
            address(self.cqes), 64, address(self.writers),
            address(ring_mod.lib.uio_writer_api_address()))
        self.memory.attach_buffers(address(self.bufs), BUF_SIZE, BUF_COUNT)
        self.dispatch = ring_mod.Dispatcher(self.memory, self.slots, Op, int(OpKind.RECV_STREAM))

    def post(self, *triples) -> int:
        for i, (user_data, res, flags) in enumerate(triples):
            self.cqes[3 * i:3 * i + 3] = [user_data, res, flags]
        return len(triples)


def address(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def data_flags(bid: int) -> int:
    return bid << SHIFT | F_MORE


def test_stream_bytes_are_copied_out_of_their_buffer_for_the_handler():
    fx = Fixture()
    n = fx.post((1, 5, data_flags(2)), (3, BUF_SIZE, data_flags(0)))
    fx.dispatch(0, n)
    assert fx.events == [("data", 1, b"CCCCC"), ("data", 3, b"A" * BUF_SIZE)]
    assert type(fx.events[0][2]) is bytes


@pytest.mark.parametrize("case", ["eof", "error", "last", "cancelled", "other kind",
                                  "bad buffer id", "oversized"])
def test_every_other_cqe_goes_to_on_complete_with_its_res_and_flags(case):
    fx = Fixture()
    op = fx.slots[2]
    res, flags = 7, data_flags(1)
    if case == "eof":
        res = 0
    elif case == "error":
        res = -104
    elif case == "last":
        flags &= ~F_MORE
    elif case == "cancelled":
        op.cancelled = True
    elif case == "other kind":
        op.kind = OpKind.SEND   # an IntEnum member, as OpTable.add stores it
    elif case == "bad buffer id":
        flags = data_flags(BUF_COUNT)
    elif case == "oversized":
        res = BUF_SIZE + 1
    fx.dispatch(0, fx.post((2, res, flags)))
    assert fx.events == [("complete", 2, res, flags)]


def test_an_intenum_kind_still_takes_the_fast_path():
    fx = Fixture()
    fx.slots[1].kind = OpKind.RECV_STREAM
    fx.dispatch(0, fx.post((1, 3, data_flags(3))))
    assert fx.events == [("data", 1, b"DDD")]


def test_flags_with_the_high_bit_set_arrive_unsigned():
    fx = Fixture()
    fx.slots[1].kind = OpKind.SEND_STREAM
    flags = 1 << 31
    fx.dispatch(0, fx.post((1, 12, flags)))
    assert fx.events == [("complete", 1, 12, flags)]


def test_a_raising_handler_stops_the_batch_at_its_cqe_and_it_can_go_on():
    fx = Fixture()

    def boom(data):
        raise ValueError("handler bug")

    fx.slots[2].handler = boom
    n = fx.post((1, 1, data_flags(0)), (2, 1, data_flags(1)), (3, 1, data_flags(2)))
    with pytest.raises(ValueError, match="handler bug"):
        fx.dispatch(0, n)
    assert fx.dispatch.failed == 1
    assert fx.events == [("data", 1, b"A")]
    fx.dispatch(fx.dispatch.failed + 1, n)
    assert fx.events == [("data", 1, b"A"), ("data", 3, b"C")]


def test_unknown_user_data_is_reported_with_its_index():
    fx = Fixture(nops=2)
    n = fx.post((1, 1, data_flags(0)), (9, 1, data_flags(0)))
    with pytest.raises(IndexError, match="unknown user_data 9"):
        fx.dispatch(0, n)
    assert fx.dispatch.failed == 1 and len(fx.events) == 1


def test_a_handler_may_replace_itself_and_free_its_op_references():
    fx = Fixture()
    op = fx.slots[1]

    class Once:
        def __call__(self, data):
            # Drop the last other reference to this handler mid-call, and
            # the one to the on_complete the next CQE will use.
            op.handler = fx.events.append
            op.on_complete = lambda op, res, flags: fx.events.append(("late", res))
            gc.collect()
            fx.events.append(("once", data))

    op.handler = Once()
    fx.dispatch(0, fx.post((1, 2, data_flags(0)), (1, 2, data_flags(1)), (1, 0, 0)))
    assert fx.events == [("once", b"AA"), b"BB", ("late", 0)]


def test_writer_takes_bytes_only_and_reports_what_is_buffered():
    ring = ring_mod.Ring(8, 16)
    try:
        wid = ring.writer_open(-1)
        write = ring.writer(wid)
        assert write(b"abc") == 3
        assert write(b"") == 3
        assert write(b"defg") == 7 and ring.writer_buffered(wid) == 7
        for bad in (bytearray(b"x"), memoryview(b"x"), "text"):
            with pytest.raises(TypeError, match="wants bytes"):
                write(bad)
        with pytest.raises(TypeError):
            write(b"a", 1)
        ring.writer_release(wid)
    finally:
        ring.close()


def test_a_batch_beyond_the_cqe_array_is_refused():
    fx = Fixture()
    with pytest.raises(IndexError, match="outside the 64 CQEs"):
        fx.dispatch(0, 65)
    assert fx.events == []


def test_without_buffers_attached_stream_bytes_go_to_on_complete():
    fx = Fixture()
    fx.memory.attach_buffers(0, 0, 0)
    fx.dispatch(0, fx.post((1, 5, data_flags(2))))
    assert fx.events == [("complete", 1, 5, data_flags(2))]


def test_a_closed_memory_stops_its_dispatcher_and_writers():
    fx = Fixture()
    wid = ring_mod.lib.uio_writer_open(fx.writers, -1)
    write = ring_mod.Writer(fx.memory, wid)
    assert write(b"abc") == 3
    fx.memory.close()
    assert fx.memory.closed
    with pytest.raises(RuntimeError, match="the ring is closed"):
        fx.dispatch(0, fx.post((1, 5, data_flags(2))))
    with pytest.raises(RuntimeError, match="the ring is closed"):
        write(b"abc")
    assert fx.events == []


def test_a_writer_refuses_other_threads_and_leaves_its_buffer_alone():
    ring = ring_mod.Ring(8, 16)
    try:
        wid = ring.writer_open(-1)
        write = ring.writer(wid)
        assert write(b"abc") == 3
        exc = raised_in_thread(lambda: write(b"from elsewhere"))
        assert isinstance(exc, RuntimeError) and "thread other than its loop's" in str(exc)
        assert ring.writer_buffered(wid) == 3
        write.release()
        assert write(b"x") < 0     # -EBADF: released, nothing written
        ring.writer_release(wid)
    finally:
        ring.close()


def run_guarded(code: str) -> str:
    """Run ``code`` in a fresh interpreter: a guard that is missing shows as
    a crash (a negative exit status) there, not as a dead test run."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return proc.stdout


UNINITIALISED = """
from uringio._core.uring import ring
for make, call in [
    (lambda: ring.Dispatcher.__new__(ring.Dispatcher), lambda d: d(0, 1)),
    (lambda: ring.Writer.__new__(ring.Writer), lambda w: w(b"x")),
    (lambda: ring.Dispatcher(ring.RingMemory.__new__(ring.RingMemory), [], ring_op(), 3),
     lambda d: d(0, 1)),
    (lambda: ring.Writer(ring.RingMemory.__new__(ring.RingMemory), 0), lambda w: w(b"x")),
]:
    try:
        call(make())
    except RuntimeError as exc:
        print("refused:", exc)
"""


def test_c_types_made_without_init_refuse_instead_of_crashing():
    code = "from uringio._core.uring.ops import Op\nring_op = lambda: Op\n" + UNINITIALISED
    out = run_guarded(code).splitlines()
    assert out == ["refused: not initialised: __init__ was never called"] * 2 + \
        ["refused: the ring is closed"] * 2, out


USE_AFTER_CLOSE = """
from uringio._core.uring.ring import Ring
ring = Ring(8, 16)
wid = ring.writer_open(-1)
write = ring.writer(wid)
write(b"queued, never sent")
ring.close()
for name, call in [("write", lambda: write(b"x")), ("turn", lambda: ring.turn(0)),
                   ("prep", lambda: ring.prep_nop(1, 0)), ("submit", ring.submit),
                   ("notify", lambda: ring.writer_notify(wid, 0)),
                   ("open", lambda: ring.writer_open(-1))]:
    try:
        call()
    except RuntimeError as exc:
        print(name, exc)
"""


def test_a_closed_ring_and_its_writers_raise_instead_of_touching_freed_memory():
    out = run_guarded(USE_AFTER_CLOSE).splitlines()
    assert out == [f"{name} the ring is closed" for name in
                   ("write", "turn", "prep", "submit", "notify", "open")], out


def test_a_send_stream_with_nothing_to_send_holds_no_buffer(uring_loop):
    # Buffers go back to the ring's pools once sent: an idle connection
    # costs no send buffer, and the next write takes one again. A write of
    # WRITE_REF_MIN bytes or more is not copied at all: it is sent from the
    # bytes object, referenced until then and not after.
    from conftest import connected_pair, recv_exactly
    loop = uring_loop
    fd, client = connected_pair()
    events = []
    stream = loop.open_send_stream(fd, events.append)
    held = loop._ring.writer_held
    for size in (64, 5000, 200_000):   # pooled sizes, and one sent from the object
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        refs = sys.getrefcount(data)
        stream.write(data)
        if size < _fastpath.WRITE_REF_MIN:
            assert held(stream._wid) >= size
        else:
            assert held(stream._wid) == 0 and sys.getrefcount(data) == refs + 1
        got = []
        reader = threading.Thread(
            target=lambda got=got, size=size: got.append(recv_exactly(client, size)))
        reader.start()
        assert loop.run_until(
            lambda reader=reader: stream.buffered == 0 and not reader.is_alive(), 10.0)
        reader.join(5)
        assert got == [data]
        assert held(stream._wid) == 0, size
        loop.run_once(0)   # (the turn after the last send: the reference goes)
        assert sys.getrefcount(data) == refs, size
    assert events == []
    stream.close()
    loop.close_fd(fd)
    client.close()


def test_stream_bytes_start_at_the_offset_given_above_the_flags():
    # Incrementally consumed buffers: uio_turn puts where a CQE's bytes
    # start in its buffer above the 32 bits of flags.
    fx = Fixture()
    for bid in range(BUF_COUNT):
        ffi.memmove(fx.bufs + bid * BUF_SIZE, bytes(range(bid * BUF_SIZE, (bid + 1) * BUF_SIZE)),
                    BUF_SIZE)
    n = fx.post((1, 4, data_flags(1) | 10 << 32), (2, 6, data_flags(0) | 26 << 32),
                (3, 7, data_flags(2) | 26 << 32))   # this one would run past its buffer
    fx.dispatch(0, n)
    assert fx.events[:2] == [("data", 1, bytes(range(42, 46))), ("data", 2, bytes(range(26, 32)))]
    assert fx.events[2] == ("complete", 3, 7, data_flags(2) | 26 << 32)
