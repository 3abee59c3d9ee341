"""Op and OpTable: one record per in-flight io_uring operation.

user_data is the op's small integer id, an index into a list: no dict
hashing on the completion path, and no ``id(obj)`` (reused after garbage
collection) or ``ffi.new_handle`` (dies with its handle object). The ids
stay below the two tag bits C keeps for itself (the layout is stated once,
in _build/_core/uring_shared.h; tests/test_contracts.py holds it).

An Op is in flight from its SQE's submission until its *final* CQE: for a
multishot op, the first CQE without IORING_CQE_F_MORE. Until then it holds
every buffer and pin the kernel may touch (the ownership rule). Records are
recycled, id and all, once their final CQE is handled: a busy server
allocates nothing per operation. Only the loop ever holds an Op; handlers
get results, never records.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class OpKind(enum.IntEnum):
    FREE = -1       # not in flight: a CQE for it breaks an invariant
    IGNORED = 0     # cancel requests and handler-less closes
    ACCEPT = 1
    RECV = 2        # one-shot recv into the op's own buffer
    RECV_STREAM = 3 # multishot recv over the provided-buffer ring
    SEND = 4
    CLOSE = 5
    WAKEUP = 6      # the read kept pending on the loop's wakeup pipe
    SEND_STREAM = 7 # reports from the C-side send streams ("writers"): one op for all
    SPLICE_IN = 8   # file -> pipe half of a sendfile
    SENDFILE = 9    # pipe -> socket half of a sendfile
    CONNECT = 10
    ACCEPT_ONCE = 11
    WATCH = 12      # a readiness watch, a one-shot poll re-armed after each report
    FILE = 13       # a file or path operation whose CQE's res is all of its answer
    # (14: file reads have no Op; they are C's, fastpath.c's FileReads)
    FILE_WRITE = 15 # a file write, continued when short; maybe linked to a FILE_SYNC
    FILE_SYNC = 16  # the fsync linked after a FILE_WRITE
    RELAY = 17      # a relay's splices, one step at a time (relay.py)
    RELAY_POLL = 18 # the poll linked before each of them


# Plain ints for the hot paths: an enum member lookup costs more than the
# rest of OpTable.add.
_FREE = int(OpKind.FREE)

# Reserved id whose CQEs are dropped: a cancel request's result says nothing
# its target's own final CQE does not, and nobody waits on those closes.
IGNORED_USER_DATA = 0
# Reserved id of every send stream's reports; the CQE's flags name the
# stream (_build/_core/uring_shared.h). One record for all, not one per stream.
WRITER_REPORTS_USER_DATA = 1


class Splice:
    """The state of one sendfile, shared by its two ops: SPLICE_IN (file ->
    pipe) and SENDFILE (pipe -> socket, the one the caller hears from)."""

    __slots__ = ("file_fd", "offset", "left", "pipe_r", "pipe_w", "in_pipe", "sent",
                 "file_error", "splice_in")

    def __init__(self, file_fd: int, offset: int, count: int, pipe_r: int, pipe_w: int,
                 splice_in: Op) -> None:
        self.file_fd = file_fd
        self.offset = offset      # of the file's next byte to read
        self.left = count         # bytes still to read from the file
        self.pipe_r, self.pipe_w = pipe_r, pipe_w
        self.in_pipe = 0          # bytes read into the pipe, not yet sent
        self.sent = 0             # bytes the socket took
        self.file_error = 0       # -errno of a failed file -> pipe splice
        self.splice_in = splice_in


class Op:
    """One operation. ``on_complete(op, res, flags)`` is the loop's
    ``_on_<kind>`` method; ``handler`` is the caller's completion handler.

    What the C dispatcher (_build/_core/fastpath.c, ``Dispatcher``) relies
    on, checked when it is made and by tests/test_contracts.py:

    1. ``kind``, ``cancelled``, ``handler`` and ``on_complete`` are slots
       (it reads them at their offsets, not by attribute lookup);
    2. a receive stream's op has ``kind`` RECV_STREAM (the int the
       Dispatcher was given), ``cancelled`` a bool, ``handler`` callable
       with the bytes;
    3. every other op's ``on_complete`` is callable as
       ``on_complete(op, res, flags)``;
    4. the table's slot ``user_data`` holds the op whose id that is, and
       nothing but Ops (a CQE for anything else is ``TypeError``).

    ``buf`` and ``pin`` are the memory the kernel reads or writes (RECV,
    SEND, WAKEUP, FILE_WRITE, the sockaddr of a CONNECT, a FILE
    operation's path); ``done`` counts what a SEND or FILE_WRITE
    has moved of it (a WATCH's says whether it reports once). ``state`` is
    the kind's own record, or None: whether an ACCEPT's listener is shared
    (one accept per connection), a ``Splice`` for SENDFILE
    and SPLICE_IN, the timespec a RECV's linked timeout reads, the poll mask
    a WATCH asks for each time it is re-armed, a FILE_WRITE's record
    (files._Write), the FILE_WRITE a FILE_SYNC follows, a FILE
    operation's path (with a statx record or a second path it holds for the
    kernel), the ``Relay`` of a RELAY or RELAY_POLL (relay.py).
    """

    __slots__ = ("id", "kind", "fd", "handler", "end_handler", "on_complete", "buf",
                 "pin", "done", "cancelled", "state")

    def __init__(self, id: int) -> None:
        self.id = id
        self.kind: int = _FREE
        self.fd = -1
        self.handler: Callable[[Any], Any] | None = None
        self.end_handler: Callable[[Any], Any] | None = None   # receive streams
        self.on_complete: Callable[[Op, int, int], None] | None = None
        self.buf: Any = None
        self.pin: Any = None
        self.done = 0
        self.cancelled = False
        self.state: Splice | Any = None

    def __repr__(self) -> str:
        return (f"<Op {self.id} {OpKind(self.kind).name} fd={self.fd}"
                f"{' cancelled' if self.cancelled else ''}>")


class OpTable:
    """Hands out op records and finds the one a CQE's user_data names.

    ``slots[user_data]`` is the record; slot 0 is the IGNORED op, and
    ``reserve`` adds more records that are never freed. A CQE that names a
    FREE record calls ``on_stale`` (the loop treats that as a broken
    invariant).
    """

    def __init__(self, ignore: Callable[[Op, int, int], None],
                 on_stale: Callable[[Op, int, int], None]) -> None:
        self.slots: list[Op] = []
        self._free: list[Op] = []
        self._on_stale = on_stale
        self._reserved = 0     # the first ids, made by reserve()
        self.reserve(IGNORED_USER_DATA, OpKind.IGNORED, ignore)

    def reserve(self, op_id: int, kind: int, on_complete) -> Op:
        """A permanent record at ``op_id`` (the next id), for CQEs that come
        for the loop's whole life; it is not counted as in flight."""
        if op_id != len(self.slots) or self._free:
            raise ValueError(f"reserve ids in order, before any add: {op_id}")
        op = Op(op_id)
        op.kind = kind
        op.on_complete = on_complete
        self.slots.append(op)
        self._reserved += 1
        return op

    def add(self, kind: int, fd: int, handler, on_complete) -> Op:
        """A record for a new operation; it is in flight until ``pop``."""
        free = self._free
        if free:
            op = free.pop()
        else:
            op = Op(len(self.slots))
            self.slots.append(op)
        op.kind = kind
        op.fd = fd
        op.handler = handler
        op.on_complete = on_complete
        op.done = 0
        op.cancelled = False
        return op

    def pop(self, op: Op):
        """The op's final CQE has arrived: drop its buffer and pin, and let
        the record serve another operation. Returns the op's handler; read
        anything else you need from the op before this."""
        handler = op.handler
        op.kind = _FREE
        op.on_complete = self._on_stale
        op.buf = op.pin = op.handler = op.end_handler = op.state = None
        self._free.append(op)
        return handler

    def get(self, op_id: int) -> Op | None:
        """The in-flight op with this id, or None."""
        if self._reserved <= op_id < len(self.slots) and self.slots[op_id].kind != _FREE:
            return self.slots[op_id]
        return None

    def live(self) -> list[Op]:
        """The ops in flight, for shutdown and tests."""
        return [op for op in self.slots[self._reserved:] if op.kind != _FREE]

    def __len__(self) -> int:
        """How many ops are in flight."""
        return len(self.slots) - self._reserved - len(self._free)
