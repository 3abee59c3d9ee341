"""The uring backend's C per-message paths (_build/fastpath.c), fed synthetic
CQEs: the dispatcher must make exactly the decisions the loop promises, and
survive handlers that raise or rewire their op while they run."""

import gc

import pytest

from uringio import ring as ring_mod
from uringio.ops import Op, OpKind

if ring_mod.Dispatcher is None:
    pytest.skip("binding not built", allow_module_level=True)

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
            op.on_complete = lambda op, res, flags: self.events.append(("complete", op.id, res, flags))
        self.bufs = ffi.new("char[]", BUF_SIZE * BUF_COUNT)
        for bid in range(BUF_COUNT):
            ffi.memmove(self.bufs + bid * BUF_SIZE, bytes([65 + bid]) * BUF_SIZE, BUF_SIZE)
        self.cqes = ffi.new("int64_t[]", 3 * 64)
        self.dispatch = ring_mod.Dispatcher(
            int(ffi.cast("uintptr_t", self.cqes)), self.slots, Op,
            int(ffi.cast("uintptr_t", self.bufs)), BUF_SIZE, BUF_COUNT, int(OpKind.RECV_STREAM))

    def post(self, *triples) -> int:
        for i, (user_data, res, flags) in enumerate(triples):
            self.cqes[3 * i:3 * i + 3] = [user_data, res, flags]
        return len(triples)


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
        wid = ring.writer_open(-1, 5)
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
