#!/usr/bin/env python3
"""Fuzz the uring backend's CQE dispatcher and its C writers' and file reads'
entry points (_build/_core/fastpath.c: Dispatcher, Writer, FileReads), fed
synthetic completions as tests/test_fastpath.py feeds them: no kernel, an
op table, a provided-buffer area and a CQE array of our own.

The input is a program (read with atheris.FuzzedDataProvider): batches of
CQEs -- for ops, for file reads, for ids nobody owns -- with results that
are errors, EOF, -ENOBUFS, -ECANCELED, short and long counts, and flags in
any combination and order (F_MORE or not, buffer ids in range or not, a
buffer offset above bit 32 that runs past its buffer); between batches, ops
change kind and are cancelled, buffers are attached and detached, handlers
raise, rewire their op or empty the op table mid-batch, writes go to
Writers, reads start (their SQEs "prepared" by a cffi callback standing in
for uio_prep_read, which may refuse with -EBUSY), and the ring memory
closes.

A Python model of the contract in fastpath.c's opening comment says what
each CQE must do, and the harness checks it, CQE by CQE:
* a receive stream's bytes that go on (res > 0, F_MORE, not cancelled,
  kind RECV_STREAM, a buffer id and offset inside the attached area) go to
  op.handler as exactly the bytes of that buffer at that offset; every
  other CQE goes to op.on_complete(op, res, flags) with res and flags as
  posted (the offset above bit 32 included);
* an unknown user_data is IndexError, something not an Op in the table
  TypeError, a handler's exception propagates, and in each case
  ``failed`` is that CQE's index and the batch can go on after it; after
  close(), RuntimeError; a handler that closes the memory ends the batch;
* a file read asks for the rest of its buffer until it is full, the file
  ends or a read fails, each time at the right address, length and file
  offset, and its handler hears once: the count, or OSError(errno) -- for
  a refused continuation, EBUSY; a handler's exception goes to report();
* a Writer returns the bytes buffered, -EBADF once released, and
  RuntimeError once the memory is closed.
Nothing else may escape, and ASan/UBSan watch the C.
"""

from __future__ import annotations

import errno
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import check, main  # noqa: E402

with atheris.instrument_imports(include=["uringio._core.uring.ops"]):
    from uringio._core import _fastpath
    from uringio._core.uring import ring as R
    from uringio._core.uring.ops import Op, OpKind

ffi, lib = R.ffi, R.lib
F_MORE, F_BUFFER, SHIFT = R.IORING_CQE_F_MORE, R.IORING_CQE_F_BUFFER, R.IORING_CQE_BUFFER_SHIFT
READ_TAG = 1 << 62
BUF_SIZE, BUF_COUNT, NCQES, NOPS = 64, 4, 16, 6
KINDS = (OpKind.RECV_STREAM, int(OpKind.RECV_STREAM), OpKind.SEND, int(OpKind.RECV),
         OpKind.FREE, int(OpKind.SEND_STREAM))
RESULTS = (1, 5, BUF_SIZE, BUF_SIZE + 1, 0, -errno.ENOBUFS, -errno.ECANCELED, -errno.ECONNRESET,
           -errno.EPIPE, -errno.EAGAIN, 2**31 - 1, -2**31)


class Stop(Exception):
    """What a handler raises when told to."""


def address(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


class World:
    """The op table, buffers, CQE array, writers and reads of one program;
    the model, checked online: each callback the C makes is matched with the
    CQE the model says it is for (``cursor``), as it happens."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self.fdp = fdp
        self.violations: list = []
        self.slots: list = [Op(i) for i in range(NOPS)]
        for op in self.slots:
            self.rewire(op)
            op.kind = KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
            op.cancelled = fdp.ConsumeBool()
        self.bufs = ffi.new("char[]", BUF_SIZE * BUF_COUNT)
        ffi.memmove(self.bufs, bytes(range(256)), BUF_SIZE * BUF_COUNT)
        self.attached = True
        self.cqes = ffi.new("int64_t[]", 3 * NCQES)
        self.writers = ffi.gc(lib.uio_writers_new(1), lib.uio_writers_destroy)
        self.memory = R.RingMemory(address(self.cqes), NCQES, address(self.writers),
                                   address(lib.uio_writer_api_address()))
        self.memory.attach_buffers(address(self.bufs), BUF_SIZE, BUF_COUNT)
        self.dispatch = R.Dispatcher(self.memory, self.slots, Op, int(OpKind.RECV_STREAM))
        self.closed = False
        self.stream_writers: list = []   # [Writer, wid, buffered, released]
        self.batch: list[tuple] = []
        self.cursor = 0
        self.refuse_next_prep = False
        self.refused: int | None = None   # the user_data whose continuation was refused
        self.starting: list | None = None  # the SQEs of a read being started
        global CURRENT
        CURRENT = self
        self.reads = _fastpath.FileReads(self.memory, 1, PREP_ADDRESS, self.os_error,
                                         self.report)
        self.inflight: dict[int, dict] = {}   # slot -> the read's model

    def violated(self, what: str, *details) -> None:
        self.violations.append((what, details))

    def current(self):
        """The CQE the C is on, by the model's count."""
        if self.cursor >= len(self.batch):
            self.violated("a callback past the end of the batch", self.batch, self.cursor)
            return None
        return self.batch[self.cursor]

    # -- the callbacks the C calls ---------------------------------------------

    def prep(self, ring, fd, buf, length, offset, user_data) -> int:
        sqe = (fd, address(buf), length, offset, user_data)
        refuse = self.refuse_next_prep
        self.refuse_next_prep = False
        if self.starting is not None and not self.batch_running:
            self.starting.append(sqe)   # a read being started, not a CQE's
            return -errno.EBUSY if refuse else 0
        cqe = self.current()
        if cqe is None:
            return 0
        read = self.inflight.get(cqe[0] & ~READ_TAG) if cqe[0] & READ_TAG else None
        if read is None or not cqe[1] > 0 or read["done"] + cqe[1] >= read["size"]:
            self.violated("a read continued that should not be", cqe, sqe)
            return 0
        read["done"] += cqe[1]
        check_sqe(self, read, sqe)
        if refuse:
            self.refused = cqe[0]   # the read ends with EBUSY: its handler comes next
            return -errno.EBUSY
        self.cursor += 1
        return 0

    def read_done(self, read: dict, result) -> None:
        cqe = self.current()
        if cqe is None:
            return
        slot = cqe[0] & ~READ_TAG
        if not cqe[0] & READ_TAG or self.inflight.get(slot) is not read:
            self.violated("a read's handler called for another CQE", cqe, result)
            return
        if self.refused == cqe[0]:
            want = -errno.EBUSY
            self.refused = None
        else:
            res = cqe[1]
            if res > 0:
                read["done"] += res
                if read["done"] < read["size"]:
                    self.violated("a short read ended without going on", cqe, read["done"])
            want = res if res < 0 else read["done"]
        if want < 0:
            if not (isinstance(result, OSError) and result.errno == -want):
                self.violated("the wrong error for a read", result, want)
        elif result != want:
            self.violated("the wrong count for a read", result, want)
        del self.inflight[slot]
        self.cursor += 1

    def report(self, target, exc) -> None:
        if not isinstance(exc, Stop):
            self.violated("report() got another exception than the handler's", exc)

    @staticmethod
    def os_error(code: int) -> OSError:
        return OSError(code, os.strerror(code))

    def rewire(self, op: Op) -> None:
        op.handler = lambda data, op=op: self.on_op(("data", op.id, data))
        op.on_complete = lambda o, res, flags: self.on_op(("complete", o.id, res, flags))

    def on_op(self, event: tuple) -> None:
        cqe = self.current()
        if cqe is None:
            return
        want = expect_op(self, *cqe)
        if want != event:
            self.violated("a CQE went the wrong way", cqe, want, event)
        self.cursor += 1
        self.act()

    # What a handler does after recording: the program says.
    def act(self) -> None:
        what = self.fdp.ConsumeIntInRange(0, 15)
        if what == 0:
            raise Stop("a handler raises")
        if what == 1:
            op = self.slots[self.fdp.ConsumeIntInRange(0, len(self.slots) - 1)]
            if type(op) is Op:
                op.kind = KINDS[self.fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
                op.cancelled = self.fdp.ConsumeBool()
                self.rewire(op)   # (new callables: the old ones may be freed now)
        elif what == 2 and (not self.inflight or self.fdp.ConsumeIntInRange(0, 15) == 0):
            # (a close with reads in flight leaks them for good, by design:
            # rarely, or the fuzzer's memory grows)
            self.memory.close()
            self.closed = True
        elif what == 3 and len(self.slots) > 1:
            self.slots.pop()
        elif what == 4:
            self.slots[self.fdp.ConsumeIntInRange(0, len(self.slots) - 1)] = "not an Op"

    batch_running = False


CURRENT: World | None = None


# uio_prep_read's stand-in, made once (a cffi callback is costly to make):
# it hands the call to the World of the program running.
@ffi.callback("int(void *, int, void *, unsigned, uint64_t, uint64_t)")
def _prep(ring, fd, buf, length, offset, user_data):
    return CURRENT.prep(ring, fd, buf, length, offset, user_data)


PREP_ADDRESS = address(_prep)


def expect_op(w: World, user_data: int, res: int, flags: int):
    """What the model says a CQE for an op does now: ("data", id, bytes),
    ("complete", id, res, flags), or an exception type."""
    if user_data & READ_TAG and user_data >= 0:
        return IndexError if (user_data & ~READ_TAG) not in w.inflight else "read"
    if not 0 <= user_data < len(w.slots):
        return IndexError
    op = w.slots[user_data]
    if type(op) is not Op:
        return TypeError
    word = flags & 0xFFFFFFFF
    bid, offset = word >> SHIFT, (flags & 0xFFFFFFFFFFFFFFFF) >> 32
    if (res > 0 and word & F_MORE and op.cancelled is False and int(op.kind) == OpKind.RECV_STREAM
            and w.attached and bid < BUF_COUNT and offset + res <= BUF_SIZE):
        start = bid * BUF_SIZE + offset
        return ("data", op.id, ffi.buffer(w.bufs)[start:start + res])
    return ("complete", op.id, res, flags)


def post_batch(w: World) -> None:
    fdp = w.fdp
    n = fdp.ConsumeIntInRange(1, NCQES)
    batch, reads_posted = [], set()
    for _ in range(n):
        which = fdp.ConsumeIntInRange(0, 9)
        if which == 9 and w.inflight:
            slot = sorted(w.inflight)[fdp.ConsumeIntInRange(0, len(w.inflight) - 1)]
            if slot in reads_posted:
                continue   # one CQE per read in flight: the kernel's rule
            reads_posted.add(slot)
            left = w.inflight[slot]["size"] - w.inflight[slot]["done"]
            res = (left, fdp.ConsumeIntInRange(1, max(1, left)), 0,
                   -fdp.ConsumeIntInRange(1, 133))[fdp.ConsumeIntInRange(0, 3)]
            batch.append((READ_TAG | slot, res, 0))
            continue
        if which == 8:
            slot = fdp.ConsumeIntInRange(0, 200)
            if slot not in w.inflight:
                batch.append((READ_TAG | slot, 1, 0))
            continue
        user_data = fdp.ConsumeIntInRange(-1, NOPS + 1)
        res = (RESULTS[fdp.ConsumeIntInRange(0, len(RESULTS) - 1)] if fdp.ConsumeBool()
               else fdp.ConsumeIntInRange(-2**31, 2**31 - 1))
        flags = fdp.ConsumeIntInRange(0, 3) | (fdp.ConsumeIntInRange(0, BUF_COUNT) << SHIFT)
        if fdp.ConsumeIntInRange(0, 3) == 0:
            flags |= fdp.ConsumeIntInRange(0, BUF_SIZE + 2) << 32
        if fdp.ConsumeIntInRange(0, 15) == 0:
            flags = fdp.ConsumeIntInRange(-2**63, 2**63 - 1)
        batch.append((user_data, res, flags))
    for i, triple in enumerate(batch):
        w.cqes[3 * i:3 * i + 3] = list(triple)
    w.refuse_next_prep = fdp.ConsumeIntInRange(0, 7) == 0
    run_batch(w, batch)
    w.refuse_next_prep = False


def run_batch(w: World, batch: list[tuple]) -> None:
    w.batch, w.cursor = batch, 0
    start = 0
    while start < len(batch):
        closed_before = w.closed
        w.batch_running = True
        try:
            w.dispatch(start, len(batch))
            error = None
        except Exception as exc:   # noqa: BLE001 -- judged below, against the model
            error = exc
        finally:
            w.batch_running = False
        check(not w.violations, *w.violations[0]) if w.violations else None
        if closed_before:
            check(isinstance(error, RuntimeError) and "closed" in str(error) and w.cursor == start,
                  "a dispatch on a closed memory did something", error, w.cursor)
            return
        if error is None:
            check(w.cursor == len(batch) or w.closed, "CQEs left undispatched", batch, w.cursor)
            return
        if isinstance(error, RuntimeError) and w.closed:
            return
        failed = w.dispatch.failed
        if isinstance(error, Stop):
            check(failed == w.cursor - 1, "failed does not name the CQE whose handler raised",
                  failed, w.cursor)
        else:
            check(isinstance(error, (IndexError, TypeError)),
                  "an exception the dispatcher does not define", repr(error))
            check(failed == w.cursor, "failed does not name the refused CQE", failed, w.cursor)
            check(expect_op(w, *batch[failed]) is type(error),
                  "a CQE refused for the wrong reason", batch[failed], repr(error))
            w.cursor += 1
        start = failed + 1
        if w.closed:
            return


def check_sqe(w: World, read: dict, sqe: tuple) -> None:
    fd, buf, length, offset, user_data = sqe
    done = read["done"]
    if not (fd == read["fd"] and buf == read["base"] + done and length == read["size"] - done):
        w.violated("a read continued at the wrong place", sqe, read)
    want = 0xFFFFFFFFFFFFFFFF if read["offset"] < 0 else read["offset"] + done
    if offset != want:
        w.violated("a read continued at the wrong file offset", offset, want)


def start_read(w: World) -> None:
    fdp = w.fdp
    size = fdp.ConsumeIntInRange(0, 64)
    buf = bytearray(size)
    offset = fdp.ConsumeIntInRange(-1, 1 << 40)
    fd = fdp.ConsumeIntInRange(0, 100)
    raises = fdp.ConsumeBool()
    read = {"fd": fd, "base": address(ffi.from_buffer(buf)), "size": size, "offset": offset,
            "done": 0, "buf": buf}

    def handler(result):
        w.read_done(read, result)
        if raises:
            raise Stop("a read's handler raises")

    read["handler"] = handler
    w.refuse_next_prep = refused = fdp.ConsumeIntInRange(0, 7) == 0
    w.starting = []
    try:
        started = w.reads.read(fd, buf, offset, handler)
    except OSError as exc:
        check(refused and exc.errno == errno.EBUSY and size > 0, "a read refused oddly", exc)
        return
    except RuntimeError:
        check(w.closed, "a read refused with the memory open")
        return
    finally:
        w.refuse_next_prep = False
        sqes, w.starting = w.starting, None
    if size == 0:
        check(started is False and not sqes, "an empty read started")
        return
    check(started is True and len(sqes) == 1 and not refused, "a read's start", started, sqes)
    slot = sqes[0][4] & ~READ_TAG
    check(sqes[0][4] & READ_TAG and slot not in w.inflight, "a read's user_data", sqes)
    check_sqe(w, read, sqes[0])
    check(not w.violations, *w.violations[0]) if w.violations else None
    w.inflight[slot] = read


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    w = World(fdp)
    for _ in range(64):
        if fdp.remaining_bytes() == 0:
            break
        action = fdp.ConsumeIntInRange(0, 9)
        if action <= 3:
            if not w.closed:
                post_batch(w)
        elif action == 4:
            op = w.slots[fdp.ConsumeIntInRange(0, len(w.slots) - 1)]
            if type(op) is Op:
                op.kind = KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
                op.cancelled = fdp.ConsumeBool()
                w.rewire(op)
        elif action == 5:
            w.attached = fdp.ConsumeBool()
            if not w.closed:
                w.memory.attach_buffers(address(w.bufs) if w.attached else 0, BUF_SIZE, BUF_COUNT)
        elif action == 6:
            start_read(w)
        elif action == 7:
            write(w)
        elif action == 8 and fdp.ConsumeIntInRange(0, 7) == 0 and (
                not w.inflight or fdp.ConsumeIntInRange(0, 15) == 0):
            w.memory.close()
            w.closed = True
        elif action == 9:
            check(isinstance(w.dispatch.failed, int), "Dispatcher.failed unreadable")
    # The reads still in flight end (EOF), so that nothing is kept for good.
    while w.inflight and not w.closed:
        batch = [(READ_TAG | slot, 0, 0) for slot in sorted(w.inflight)][:NCQES]
        for i, triple in enumerate(batch):
            w.cqes[3 * i:3 * i + 3] = list(triple)
        run_batch(w, batch)
    w.memory.close()


def write(w: World) -> None:
    fdp = w.fdp
    if not w.stream_writers or fdp.ConsumeIntInRange(0, 3) == 0:
        wid = lib.uio_writer_open(w.writers, fdp.ConsumeIntInRange(-1, 50))
        w.stream_writers.append([R.Writer(w.memory, wid), wid, 0, False])
    entry = w.stream_writers[fdp.ConsumeIntInRange(0, len(w.stream_writers) - 1)]
    writer, wid, buffered, released = entry
    if fdp.ConsumeIntInRange(0, 7) == 0:
        writer.release()
        entry[3] = True
        return
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    try:
        got = writer(data)
    except RuntimeError as exc:
        check(w.closed and "closed" in str(exc), "a Writer refused with the memory open", exc)
        return
    check(not w.closed, "a Writer wrote to closed memory")
    if released:
        check(got == -errno.EBADF, "a released Writer wrote", got)
        return
    entry[2] += len(data)
    check(got == entry[2], "a Writer's count of what it holds", got, entry[2])
    check(lib.uio_writer_buffered(w.writers, wid) == entry[2], "uio_writer_buffered disagrees")


if __name__ == "__main__":
    main(test_one_input)
