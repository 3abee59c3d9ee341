"""Op and OpTable: one record per in-flight io_uring operation.

user_data is the op's small integer id, an index into a list: no dict
hashing on the completion path, and no ``id(obj)`` (reused after garbage
collection) or ``ffi.new_handle`` (dies with its handle object).

An Op lives from its SQE's submission until its *final* CQE: for a
multishot op, the first CQE without IORING_CQE_F_MORE. Until then it holds
every buffer and pin the kernel may touch (the ownership rule).
"""

from __future__ import annotations

import enum
from typing import Any, Callable


class OpKind(enum.IntEnum):
    IGNORED = 0     # cancel requests and fire-and-forget closes
    ACCEPT = 1
    RECV = 2        # one-shot recv into the caller's buffer
    RECV_STREAM = 3 # multishot recv over the provided-buffer ring
    SEND = 4
    CLOSE = 5
    TIMEOUT = 6
    WAKEUP = 7      # the read kept pending on the loop's eventfd


# Reserved id whose CQEs are dropped: cancel requests report nothing we need,
# and their target op reports its own end.
IGNORED_USER_DATA = 0


class Op:
    """One in-flight operation. ``on_complete(op, res, flags)`` is the loop's
    ``_on_<kind>`` method; ``handler`` is the caller's completion handler."""

    __slots__ = ("id", "kind", "fd", "handler", "on_complete", "buf", "pin",
                 "offset", "cancelled", "extra")

    def __init__(self, id: int) -> None:
        self.id = id
        self.kind = OpKind.IGNORED
        self.fd = -1
        self.handler: Callable[[Any], Any] | None = None
        self.on_complete: Callable[[Op, int, int], None] | None = None
        self.buf: Any = None
        self.pin: Any = None
        self.offset = 0
        self.cancelled = False
        self.extra: Any = None

    def __repr__(self) -> str:
        return (f"<Op {self.id} {self.kind.name} fd={self.fd}"
                f"{' cancelled' if self.cancelled else ''}>")


class OpTable:
    """Hands out op ids and finds the op for a CQE's user_data.

    Ids are reused after ``pop``; Op objects are not (a handler may keep one).
    Slot 0 holds the IGNORED op.
    """

    def __init__(self, ignore: Callable[[Op, int, int], None]) -> None:
        first = Op(IGNORED_USER_DATA)
        first.on_complete = ignore
        self.slots: list[Op | None] = [first]
        self._free: list[int] = []
        self._live = 0

    def add(self, kind: OpKind, fd: int, handler, on_complete) -> Op:
        """A new op with a fresh id; it is in flight until ``pop``."""
        if self._free:
            op_id = self._free.pop()
            op = Op(op_id)
            self.slots[op_id] = op
        else:
            op_id = len(self.slots)
            op = Op(op_id)
            self.slots.append(op)
        op.kind = kind
        op.fd = fd
        op.handler = handler
        op.on_complete = on_complete
        self._live += 1
        return op

    def pop(self, op: Op) -> None:
        """Forget ``op``: its final CQE has arrived. Drops its buffer and pin."""
        self.slots[op.id] = None
        self._free.append(op.id)
        self._live -= 1
        op.buf = op.pin = None

    def get(self, op_id: int) -> Op | None:
        return self.slots[op_id] if 0 <= op_id < len(self.slots) else None

    def live(self) -> list[Op]:
        """The ops in flight, for shutdown and tests."""
        return [op for op in self.slots[1:] if op is not None]

    def __len__(self) -> int:
        return self._live
