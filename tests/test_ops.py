import pytest

from uringio._core.uring.ops import IGNORED_USER_DATA, OpKind, OpTable


def noop(op, res, flags):
    pass


def stale(op, res, flags):
    raise RuntimeError("stale")


def test_ids_are_small_and_slot_zero_is_reserved():
    table = OpTable(noop, stale)
    a = table.add(OpKind.SEND, 5, None, noop)
    b = table.add(OpKind.RECV, 6, None, noop)
    assert (a.id, b.id) == (1, 2)
    assert table.slots[IGNORED_USER_DATA].kind == OpKind.IGNORED
    assert len(table) == 2 and table.live() == [a, b]


def test_pop_frees_the_record_for_reuse_and_drops_buffers():
    table = OpTable(noop, stale)
    op = table.add(OpKind.SEND, 3, print, noop)
    op.buf, op.pin, op.cancelled, op.done = b"data", object(), True, 4
    table.pop(op)
    assert op.buf is None and op.pin is None and op.handler is None
    assert table.get(op.id) is None and len(table) == 0
    with pytest.raises(RuntimeError):   # a CQE for a free record is a broken invariant
        op.on_complete(op, 0, 0)
    again = table.add(OpKind.RECV, 4, None, noop)
    assert again is op and not again.cancelled and again.done == 0
    assert table.get(op.id) is again


def test_get_outside_table_is_none():
    table = OpTable(noop, stale)
    assert table.get(99) is None and table.get(-1) is None and table.get(0) is None
