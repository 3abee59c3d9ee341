"""The contracts between uringio's C and its Python, each with one source
and a test that fails when the two sides disagree.

* ``Connection.write``: the C write (``_build/_core/fastpath.c``,
  ``connection_write``) takes the common case itself and hands every other
  to the Python ``write`` it replaced; both are driven here through the
  same cases, and must end alike.
* The user_data bit layout (``_build/_core/uring_shared.h``): what the C
  dispatcher reads and what the Python op table hands out.
* The classes C relies on by their layout: ``RequestCycle`` adds no slots
  to the C ``Cycle``, and ``Op`` has the slots the dispatcher reads.
"""

import asyncio
import collections

import pytest

from uringio.net import connection as connection_mod
from uringio.net.connection import Connection, _QueuedFile


class _Stream:
    """A send stream that records what it is given."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def write_bytes(self, data: bytes) -> int:
        self.got.append(data)
        return sum(map(len, self.got))   # the level: everything is buffered

    def notify(self, level: int) -> bool:
        return False


class _Loop:
    def open_send_stream(self, fd: int, handler) -> _Stream:
        return _Stream()


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = 0

    def pause_writing(self) -> None:
        self.paused += 1


def _file(exclusive: bool) -> _QueuedFile:
    return _QueuedFile(None, 0, 1, False, None, exclusive, False)


# (name, what is set on a fresh connection, the data written)
CASES = [
    ("bytes", {}, b"abc"),
    ("empty", {}, b""),
    ("bytearray", {}, bytearray(b"abc")),
    ("memoryview", {}, memoryview(b"abcdef")[1:4]),
    ("not bytes-like", {}, "abc"),
    ("over the high-water mark", {"_high": 2}, b"abc"),
    ("over it, already paused", {"_high": 2, "_paused_writing": True}, b"abc"),
    ("at the high-water mark", {"_high": 3}, b"abc"),
    ("closing", {"_closing": True}, b"abc"),
    ("closed", {"_closing": True, "_closed": True}, b"abc"),
    ("after write_eof", {"_eof": 1}, b"abc"),
    ("after the FIN", {"_eof": 2}, b"abc"),
    ("behind a queued file", {"_queue": "file"}, b"abc"),
    ("behind an exclusive file", {"_queue": "exclusive"}, b"abc"),
    ("an empty queue", {"_queue": "empty"}, b"abc"),
]


def _run(write, state: dict, data) -> tuple:
    """What ``write(conn, data)`` does to a connection in ``state``: its
    outcome, what reached the stream, the queue, and the pauses."""
    protocol = _Protocol()
    conn = Connection(_Loop(), 99, protocol)
    for name, value in state.items():
        if name == "_queue":
            value = collections.deque(
                {"file": [_file(False)], "exclusive": [_file(True)], "empty": []}[value])
        setattr(conn, name, value)
    try:
        outcome = repr(write(conn, data))
    except Exception as exc:   # noqa: BLE001 -- the outcome compared
        outcome = f"{type(exc).__name__}: {exc}"
    queue = None if conn._queue is None else [
        item if item.__class__ is bytes else type(item).__name__ for item in conn._queue]
    return outcome, conn._stream.got, queue, protocol.paused, conn._paused_writing


def test_the_c_write_replaced_the_python_one():
    assert Connection.write is not connection_mod.python_write
    assert type(Connection.write).__name__ == "method_descriptor"


@pytest.mark.parametrize("name, state, data", CASES, ids=[case[0] for case in CASES])
def test_the_c_and_python_writes_agree(name, state, data):
    c_result = _run(Connection.write, state, data)
    python_result = _run(connection_mod.python_write, state, data)
    assert c_result == python_result


def test_the_cases_reach_both_paths_of_the_c_write():
    """The cases are worth something only if some take the C steps and
    some are handed to Python: a write of bytes is the first kind, one
    after close the second (it raises from Python)."""
    outcome, got, *_ = _run(Connection.write, {}, b"abc")
    assert outcome == "None" and got == [b"abc"]
    outcome, got, *_ = _run(Connection.write, {"_closing": True}, b"abc")
    assert outcome == "RuntimeError: write() after close()" and got == []


# -- the user_data layout (_build/_core/uring_shared.h) ------------------------------------

def test_the_user_data_layout_is_the_headers():
    from uringio._core.uring import ring
    if ring.lib is None:
        pytest.skip("the io_uring binding is not built")
    assert ring.UIO_WRITER_TAG == 1 << 63 and ring.UIO_READ_TAG == 1 << 62
    assert ring.UIO_PUMP_TAG == 1 << 61
    assert ring.UIO_OP_ID_LIMIT == ring.UIO_PUMP_TAG   # op ids stay below every tag
    # The writer reports' flags: the level bit, then the pump bit, above the id.
    assert ring.UIO_WRITER_LEVEL == 1 << 31 and ring.UIO_PUMP_REPORT == 1 << 30
    assert ring.UIO_WRITER_ID_MASK == ring.UIO_PUMP_REPORT - 1
    # The released notice is a writer-tagged value no writer id reaches.
    assert ring.UIO_RELEASED_USER_DATA == ring.UIO_WRITER_TAG | 0xFFFFFFFF


# -- the classes C relies on by their layout ------------------------------------------------

def test_request_cycle_keeps_no_state_of_its_own():
    """RequestCycle's rule 1: asgicore reuses a cycle for the next request,
    setting Cycle's fields; anything a subclass adds would carry over."""
    from uringio.asgi._asgicore import Cycle
    from uringio.asgi.http import RequestCycle
    assert RequestCycle.__basicsize__ == Cycle.__basicsize__
    assert RequestCycle.__dictoffset__ == 0 and RequestCycle.__weakrefoffset__ == 0
    assert "send" not in vars(RequestCycle)   # rule 3: Cycle's send is the one C runs


def test_the_c_dispatcher_finds_the_op_slots_it_reads():
    """Op's rule 1: the Dispatcher is made with the Op type, and finds its
    slots then (a renamed slot is an error there, not a wrong read)."""
    from uringio._core.uring.ops import Op
    for name in ("kind", "cancelled", "handler", "on_complete"):
        assert name in Op.__slots__


# Methods of asyncio.Task that leave no state a later request could see:
# everything else must set _touched (EagerTask's rule 1).
TASK_READ_ONLY = {"cancelled", "cancelling", "done", "exception", "get_coro", "get_loop",
                  "get_name", "get_stack", "print_stack", "result",
                  # (a task refuses these: its result is its coroutine's)
                  "set_exception", "set_result"}


def test_eager_task_marks_itself_touched_in_every_method_that_leaves_state():
    from uringio.asgi.eager import EagerTask
    public = {name for name in dir(asyncio.Task) if not name.startswith("_")}
    leave_state = public - TASK_READ_ONLY
    assert leave_state == {"add_done_callback", "cancel", "remove_done_callback", "set_name",
                           "uncancel"}, "judge the new methods of asyncio.Task and list them"
    loop = asyncio.new_event_loop()
    try:
        for name in sorted(leave_state):
            assert name in vars(EagerTask), f"EagerTask does not override {name}"
            task = EagerTask.__new__(EagerTask)
            asyncio.Future.__init__(task, loop=loop)
            task._touched = False
            args = {"add_done_callback": (print,), "remove_done_callback": (print,),
                    "set_name": ("x",), "cancel": (), "uncancel": ()}[name]
            getattr(task, name)(*args)
            assert task._touched, name
    finally:
        loop.close()
    assert {"_begun", "_touched"} <= set(EagerTask.__slots__)   # rule 2


def test_a_large_body_is_written_apart_where_the_send_stream_takes_it_by_reference():
    # asgicore writes a body of BODY_APART bytes or more apart from its head
    # because the uring send stream sends a write that large from the object
    # (fastpath's WRITE_REF_MIN): were they to differ, bodies in between
    # would be copied into the head, or written apart to be copied anyway.
    from uringio._core.uring import ring
    if ring.lib is None:
        pytest.skip("the io_uring binding is not built")
    from uringio._core import _fastpath
    from uringio.asgi import _asgicore
    assert _asgicore.BODY_APART == _fastpath.WRITE_REF_MIN
