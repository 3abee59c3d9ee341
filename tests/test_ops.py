from uringio.ops import IGNORED_USER_DATA, OpKind, OpTable


def noop(op, res, flags):
    pass


def test_ids_are_small_reused_and_slot_zero_is_reserved():
    table = OpTable(noop)
    a = table.add(OpKind.SEND, 5, None, noop)
    b = table.add(OpKind.RECV, 6, None, noop)
    assert (a.id, b.id) == (1, 2)
    assert table.slots[IGNORED_USER_DATA].kind == OpKind.IGNORED
    assert len(table) == 2
    table.pop(a)
    assert len(table) == 1 and table.get(1) is None
    c = table.add(OpKind.SEND, 7, None, noop)
    assert c.id == 1 and c is not a   # id reused, record not
    assert table.live() == [c, b]


def test_pop_drops_buffer_and_pin():
    table = OpTable(noop)
    op = table.add(OpKind.SEND, 3, None, noop)
    op.buf, op.pin = b"data", object()
    table.pop(op)
    assert op.buf is None and op.pin is None


def test_get_outside_table_is_none():
    table = OpTable(noop)
    assert table.get(99) is None and table.get(-1) is None
