"""ProactorLoop: the io_uring completion loop (backend "uring").

What the kernel guarantees, and what it forces on this code:

* The kernel performs each operation and posts a CQE carrying our user_data,
  ``res`` (a count, a new fd, or -errno) and ``flags``. Until that CQE, the
  kernel may read or write the operation's buffer, so the Op record keeps the
  buffer and its pin referenced until the *final* CQE (the ownership rule).
  A cancel only asks: the cancelled operation still completes, usually with
  -ECANCELED, and only then is its Op dropped.
* Multishot accept and recv post many CQEs for one SQE; IORING_CQE_F_MORE
  says more will come. When it is clear the operation has ended (the kernel
  can end it at any time, e.g. on -ENOBUFS) and we re-arm it if still wanted.
* Multishot recv picks a buffer from the provided-buffer ring per CQE. The
  bytes are copied out while the CQE is handled, so the next turn's single
  foreign call hands every buffer it reported back before submitting.
* With SINGLE_ISSUER | DEFER_TASKRUN, completion work runs only inside our
  io_uring_enter, in this thread: the loop must be created and run in one
  thread, and other threads wake it through the wakeup pipe's read kept pending.

Per turn: one foreign call submits the SQEs queued since the last turn,
waits, and leaves every ready CQE in an array; then the C dispatcher
(_build/_core/fastpath.c) hands the bytes of each receive stream CQE to the
stream's handler, and every other CQE to its op's ``_on_<kind>`` method.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import socket
import struct
from time import monotonic
from typing import cast

from ...errors import (
    BusyResourceError,
    InvariantError,
    LoopClosedError,
    UringUnavailable,
    os_error,
    with_sent,
)
from ..loop import BaseLoop, drop, log
from ..relay import PIPE_CHUNK
from .buffers import BufRing, pin, pin_writable
from .files import UringFiles
from .ops import IGNORED_USER_DATA, WRITER_REPORTS_USER_DATA, Op, OpKind, OpTable, Splice
from .relay import UringRelay
from .ring import (
    IORING_ASYNC_CANCEL_ALL,
    IORING_ASYNC_CANCEL_ANY,
    IORING_CQE_F_MORE,
    IOSQE_IO_HARDLINK,
    IOSQE_IO_LINK,
    PACE_CHUNK,
    UIO_PUMP_REPORT,
    UIO_WRITER_ID_MASK,
    UIO_WRITER_LEVEL,
    Dispatcher,
    Ring,
    kernel_release,
)
from .send_stream import UringSendStream

_ECANCELED = errno.ECANCELED
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLL_ENDS = select.POLLERR | select.POLLHUP | select.POLLNVAL
_ENOBUFS = errno.ENOBUFS
_MSG_NOSIGNAL = socket.MSG_NOSIGNAL
_ACCEPT_FLAGS = socket.SOCK_CLOEXEC
_EMPTY = b""
_pin = pin
_SEND = int(OpKind.SEND)
_RECV_STREAM = int(OpKind.RECV_STREAM)


class RecvState(enum.Enum):
    """The states of a receive stream on io_uring, where a multishot receive
    is armed in the kernel, a cancel only asks, and bytes can still come
    after ``stop_recv`` (docs/design.md has the table of transitions; each
    is marked FROM -> TO where ProactorLoop makes it). An fd with no
    RecvStream is IDLE; ``close_fd`` drops the record, and nothing is
    delivered after it returns."""

    ARMED = "armed"         # op: a multishot receive in flight
    STOPPING = "stopping"   # draining: stopped, its final CQE still to come; what it posts is held
    HELD = "held"           # nothing in flight; held waits for the next start (or a recv)
    BACKLOG = "backlog"     # op started, not yet submitted: held goes first (after draining's end)


class RecvStream:
    """The receive stream of one fd (the epoll loop's twin is ``_FdState``)."""

    __slots__ = ("fd", "state", "op", "draining", "held", "scheduled")

    def __init__(self, fd: int, op: Op) -> None:
        self.fd = fd
        self.state = RecvState.ARMED
        self.op: Op | None = op           # the live receive's (ARMED, BACKLOG)
        self.draining: Op | None = None   # the stopped receive's, until its final CQE
        self.held: list = []              # bytes, then maybe b"" (EOF) or an OSError
        self.scheduled = False            # a _deliver_held call is queued


def _sq_full() -> OSError:
    # What every prep_* call's non-zero return means (ring.py): -EBUSY, the
    # SQ full and the kernel taking none of it.
    return OSError(errno.EBUSY, "io_uring SQ is full and the kernel takes no more")


class ProactorLoop(UringRelay, UringFiles, BaseLoop):
    """The ``Loop`` (interface.py) on io_uring. Raises UringUnavailable when
    the ring cannot be set up or the kernel lacks multishot accept/recv
    (Linux 6.0+)."""

    backend = "uring"
    read_files_up_to = 32 * 1024   # interface.py says why

    def __init__(self, entries: int = 1024, buffers: int = 1024,
                 buffer_size: int = 16384, cq_entries: int | None = None,
                 incremental_buffers: bool = True, pace_chunk: int = PACE_CHUNK) -> None:
        ring = Ring(entries, cq_entries if cq_entries is not None else entries * 16,
                    writer_reports=WRITER_REPORTS_USER_DATA)
        ring.pace_chunk = pace_chunk   # _poll says what it is for
        try:
            feats = ring.probe()
            if not (feats.multishot_accept and feats.multishot_recv and feats.buf_ring):
                major, minor = kernel_release()
                raise UringUnavailable(
                    errno.ENOSYS, f"kernel {major}.{minor} lacks multishot accept/recv with "
                    "provided-buffer rings (needs Linux 6.0+); use --backend epoll")
            self._bufs = BufRing(ring, buffers, buffer_size, incremental=incremental_buffers)
        except BaseException:
            ring.close()
            raise
        super().__init__()
        self._ring = ring
        self.features = feats
        self._ops = OpTable(self._on_ignored, self._on_stale)
        self._ops.reserve(WRITER_REPORTS_USER_DATA, OpKind.SEND_STREAM, self._on_writer_report)
        self._slots = self._ops.slots
        # Hot-path callables, bound once.
        self._prep_send = ring.prep_send
        self._prep_recv_multishot = ring.prep_recv_multishot
        self._bgid = self._bufs.bgid
        self._turn = ring.turn
        self._dispatch = Dispatcher(ring.memory, self._slots, Op, _RECV_STREAM)
        # Bound once: every receive stream's op holds it (a bound method
        # per op would be 64 bytes an idle connection).
        self._recv_stream_done = self._on_recv_stream
        self._readers: dict[int, Op] = {}    # fd -> one-shot RECV op
        self._recv_streams: dict[int, RecvStream] = {}   # fd -> its receive stream
        self._acceptors: dict[int, Op] = {}  # listening fd -> ACCEPT op
        self._send_streams: dict[int, UringSendStream] = {}   # by fd
        self._watches: dict[tuple[int, bool], Op] = {}   # (fd, writable) -> WATCH op
        # Write watches on half-closed sockets, by fd (_park says why), and
        # the epoll instance they wait in: made at the first.
        self._parked: dict[int, Op] = {}
        self._parked_epoll: select.epoll | None = None
        self._relays = {}
        self._pumps = {}
        self._streams_by_wid: list[UringSendStream | None] = []   # the C writer ids are dense
        self._wakeup_buf = bytearray(8)
        self.enobufs_rearms = 0   # how often the buffer ring ran dry (diagnostics)
        self.waits = 0            # turns: each one io_uring_enter (engine_counters)
        self._arm_wakeup()

    def _bind_thread(self, thread_id: int) -> None:
        # IORING_SETUP_SINGLE_ISSUER: only the creating thread may submit,
        # and the C send streams are bound to it (_build/_core/fastpath.c).
        if thread_id != self._thread_id:
            raise RuntimeError("an io_uring loop runs in the thread that created it")

    # -- the turn ------------------------------------------------------------

    def _poll(self, timeout: float | None) -> None:
        # Discussion: the wait policy. Nothing here spins: a turn with
        # nothing ready sleeps in io_uring_enter until the first CQE or the
        # timeout, whatever is in flight. What file reads change is how a
        # turn that slept for them hands out what woke it: a disk answers
        # the reads in flight in clumps, and if a turn took the whole clump,
        # the reads its readers make next would reach the kernel only after
        # the last of them ran, the device idling meanwhile (0.82x fio at 64
        # O_DIRECT reads in flight). So the ring hands such a clump out
        # ``pace_chunk`` CQEs per turn, and each turn submits what the last
        # chunk's readers prepared, as fio resubmits each read as soon as it
        # reaps it (0.95-0.99x). A loop that never sleeps -- page-cache reads,
        # completed inline as they are submitted -- takes all at once as
        # before. The measurements: struct uio_pace in
        # _build/_core/uring_helpers.c.
        reads = self._reads
        n = self._turn(0 if timeout == 0 else 1, timeout, self._bufs,
                       0 if reads is None else reads.inflight)
        self.waits += 1
        dispatch = self._dispatch
        i = 0
        while i < n:
            try:
                # In C (_build/_core/fastpath.c): for each CQE, the hot case --
                # bytes from a receive stream that goes on -- is copied out
                # for op.handler(data); any other goes to op.on_complete.
                dispatch(i, n)
                return
            except InvariantError:
                self.stop()
                raise
            except Exception:
                i = dispatch.failed
                user_data = self._ring.cqe(i)[0]
                i += 1
                if not 0 <= user_data < len(self._slots):
                    self.stop()
                    raise InvariantError(f"CQE for unknown user_data {user_data}") from None
                self._handler_failed(self._slots[user_data])

    def engine_counters(self) -> dict[str, int]:
        sqes, cqes, overflows = self._ring.counters()
        return {"waits": self.waits, "submissions": sqes, "completions": cqes,
                "buffer_ring_empty": self.enobufs_rearms, "cq_overflows": overflows}

    def _on_ignored(self, op: Op, res: int, flags: int) -> None:
        # Cancel requests and handler-less closes: their outcome is reported
        # by the operation they target, or matters to nobody.
        pass

    def _on_stale(self, op: Op, res: int, flags: int) -> None:
        raise InvariantError(f"CQE (res={res}, flags={flags:#x}) for op {op.id}, "
                             "which is not in flight")

    # -- accept --------------------------------------------------------------

    def accept(self, sock: socket.socket, handler, once: bool = False,
               shared: bool = False) -> None:
        self._check_open()
        fd = sock.fileno()
        if fd in self._acceptors:
            raise BusyResourceError(f"an accept is already in flight on fd {fd}")
        # (io_uring's accept does not block either way; the epoll loop does
        # the same, and a cancel's _take_backlog needs it)
        sock.setblocking(False)
        if once:
            op = self._ops.add(OpKind.ACCEPT_ONCE, fd, handler, self._on_accept_once)
        else:
            op = self._ops.add(OpKind.ACCEPT, fd, handler, self._on_accept)
            # The kernel wakes one accept per connection, the oldest waiting
            # on the listener; a multishot accept stays in line as the
            # oldest, so on a shared listener it would take every
            # connection. A single accept re-armed after each one goes to
            # the back of the line instead (and a busy process is not
            # woken: it is out of the line until its turn re-arms it).
            op.state = shared
        self._acceptors[fd] = op
        self._submit(self._ring.prep_accept(fd, 0 if once or shared else 1, _ACCEPT_FLAGS,
                                            op.id))

    def _on_accept_once(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_accept(3): res is the new fd or -errno. A cancelled
        # one that won the race is closed: nobody waits for it any more.
        if self._acceptors.get(op.fd) is op:
            del self._acceptors[op.fd]
        cancelled = op.cancelled
        handler = self._ops.pop(op)
        if cancelled:
            if res >= 0:
                os.close(res)
            return
        assert handler is not None
        handler(res if res >= 0 else os_error(-res))

    def cancel_accept(self, sock: socket.socket) -> None:
        op = self._acceptors.pop(sock.fileno(), None)
        if op is None:
            return
        # Synchronously where the kernel can: the accept lets go of the
        # listening socket before this returns, so that closing it at once
        # stops the kernel taking connections, as close(2) does on a
        # readiness loop (its CQEs still come, in the next turn). Otherwise
        # (its SQE not submitted yet, an older kernel) in the ring's order.
        op.cancelled = True
        cancelled = self._ring.sync_cancel(op.id)
        if cancelled == -errno.ENOENT:
            self._ring.submit()   # (its SQE still queued here: in the kernel now, then cancelled)
            cancelled = self._ring.sync_cancel(op.id)
        if cancelled < 0:
            self._submit(self._ring.prep_cancel64(op.id, 0, IGNORED_USER_DATA, 0))
        elif op.kind is OpKind.ACCEPT:
            self._take_backlog(sock, op)

    def _take_backlog(self, sock: socket.socket, op: Op) -> None:
        """Accept what waits in ``sock``'s backlog now, for ``op``'s handler
        in the next turn, as connections its cancelled accept raced.

        The kernel wakes one io_uring accept per new connection (accept
        polls are exclusive waits, against a thundering herd), the oldest
        on the listener first, and the accept runs later, in the waking
        ring's own turn (DEFER_TASKRUN). Cancelled in between, it takes the
        wake-up with it: the connection stays in the backlog, and another
        process accepting on a shared listener -- a rolling restart's new
        worker -- is not woken for it until the next client comes.
        (epoll's waits are not exclusive: every loop is woken.) So what the
        backlog holds once this accept has let go is taken here; a newer
        connection wakes the accepts that remain. (The listener is
        non-blocking since accept(); one made blocking since is left as
        it is: accepting there could block.)"""
        if sock.gettimeout() != 0.0:
            return
        handler = op.handler
        assert handler is not None
        while True:
            try:
                conn, _address = sock.accept()
            except OSError:   # empty (BlockingIOError), or out of fds: the rest wait
                return
            self.call_soon(handler, conn.detach())

    def _on_accept(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_multishot_accept(3): res is the new fd or -errno;
        # IORING_CQE_F_MORE clear means this SQE will post no more (always,
        # for a shared listener's single accepts).
        more = flags & IORING_CQE_F_MORE
        if op.cancelled:
            if res >= 0:
                # Raced with the cancel: the kernel took this client off the
                # listener, which other processes may share (a pre-fork
                # server's), so it is handed on, not dropped; the handler
                # closes it if it has nobody to serve it.
                assert op.handler is not None
                op.handler(res)
            if not more:
                self._ops.pop(op)
            return
        if res >= 0:
            if not more:   # (a shared listener's single accept: after each connection)
                self._submit(self._ring.prep_accept(op.fd, 0 if op.state else 1, _ACCEPT_FLAGS,
                                                    op.id))
            assert op.handler is not None   # an accept always has one
            op.handler(res)
            return
        # An error ends accepting; the caller decides when to start again.
        if self._acceptors.get(op.fd) is op:
            del self._acceptors[op.fd]
        if more:
            handler = op.handler
            self._cancel(op)
        else:
            handler = self._ops.pop(op)
        assert handler is not None   # an accept always has one
        handler(os_error(-res))

    # -- receive -------------------------------------------------------------

    # Each transition below is marked FROM -> TO in RecvState's words; a
    # branch that changes no state says so too.

    def start_recv(self, fd: int, handler, end_handler=None) -> None:
        stream = self._no_reader_yet(fd)
        op = self._ops.add(OpKind.RECV_STREAM, fd, handler, self._recv_stream_done)
        op.end_handler = end_handler or handler
        if stream is None:   # IDLE -> ARMED
            self._recv_streams[fd] = RecvStream(fd, op)
            self._submit(self._prep_recv_multishot(fd, self._bgid, 0, op.id))
            return
        # STOPPING or HELD -> BACKLOG: what is held goes first, once the
        # stopped receive (if any) has posted its last.
        stream.op = op
        stream.state = RecvState.BACKLOG
        if stream.draining is None:
            self._schedule_held(stream)

    def _no_reader_yet(self, fd: int) -> RecvStream | None:
        # start_recv's and recv's refusal of a second reader; fd's stream.
        self._check_open()
        stream = self._recv_streams.get(fd)
        if fd in self._readers or (stream is not None and stream.op is not None):
            raise BusyResourceError(f"a recv is already in flight on fd {fd}")
        return stream

    def stop_recv(self, fd: int) -> None:
        op = self._readers.pop(fd, None)
        if op is not None:   # a one-shot recv: its handler hears ECANCELED
            op.cancelled = True
            self._submit(self._ring.prep_cancel64(op.id, 0, IGNORED_USER_DATA, 0))
            return
        stream = self._recv_streams.get(fd)
        if stream is None or stream.op is None:
            return   # IDLE, STOPPING, HELD: nothing is receiving
        op, stream.op = stream.op, None
        op.cancelled = True
        if stream.state is RecvState.ARMED:
            # ARMED -> STOPPING: a cancel only asks; until its final CQE the
            # receive may still post bytes, which are held.
            stream.state = RecvState.STOPPING
            stream.draining = op
            self._submit(self._ring.prep_cancel64(op.id, 0, IGNORED_USER_DATA, 0))
        else:
            # BACKLOG -> STOPPING, HELD or IDLE: never submitted, so nothing
            # more comes of it; what was held for it stays held.
            self._ops.pop(op)
            self._settle(stream)

    def _settle(self, stream: RecvStream) -> None:
        # A stream left with no receive of its own: -> STOPPING while its
        # stopped one may still post, else -> HELD, or -> IDLE (no record)
        # with nothing held.
        if stream.draining is not None:
            stream.state = RecvState.STOPPING
        elif stream.held:
            stream.state = RecvState.HELD
        else:
            del self._recv_streams[stream.fd]

    def _on_recv_stream(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_recv_multishot(3): res > 0 is a byte count in the
        # buffer flags >> IORING_CQE_BUFFER_SHIFT, 0 is EOF, < 0 is -errno.
        # IORING_CQE_F_MORE clear: this SQE is over; re-arm if still wanted.
        # (The C dispatcher hands an ARMED stream's bytes that go on straight
        # to its handler; the rest comes here.)
        stream = self._recv_streams.get(op.fd)
        if stream is not None and op is stream.op:   # ARMED
            if res > 0:
                # Copied out now: the ring takes the buffer back next turn.
                data = self._bufs.take(flags, res)
                if not flags & IORING_CQE_F_MORE:
                    self._submit(self._prep_recv_multishot(op.fd, self._bgid, 0, op.id))
                assert op.handler is not None   # a live stream always has one
                op.handler(data)   # ARMED -> ARMED
            elif res == -_ENOBUFS:
                # ARMED -> ARMED: the buffer ring ran dry; no data was taken.
                # The buffers used this turn go back before the re-armed
                # recv is submitted, and the ring gets more, until all it
                # has are in circulation.
                self.enobufs_rearms += 1
                self._bufs.grow()
                self._submit(self._prep_recv_multishot(op.fd, self._bgid, 0, op.id))
            else:
                # ARMED -> IDLE: EOF or an error ends the stream.
                del self._recv_streams[op.fd]
                stream.op = None
                self._end_stream(op, _EMPTY if res == 0 else os_error(-res))
            return
        # A stopped receive (the stream's ``draining``), or one whose fd was
        # closed (no stream, or a new one): what it posts is held for the
        # next start, or dropped after close_fd.
        if stream is not None and op is not stream.draining:
            stream = None   # (a stream started on the fd number since)
        if res > 0:
            data = self._bufs.take(flags, res)   # (its buffer goes back either way)
            if stream is not None:
                stream.held.append(data)
            if flags & IORING_CQE_F_MORE:
                return
        elif res != -_ECANCELED and res != -_ENOBUFS and stream is not None:
            stream.held.append(_EMPTY if res == 0 else os_error(-res))
        # Its final CQE: the receive is over.
        self._ops.pop(op)
        if stream is not None:
            stream.draining = None
            if stream.state is RecvState.STOPPING:
                self._settle(stream)   # STOPPING -> HELD or IDLE
            else:
                self._schedule_held(stream)   # BACKLOG -> BACKLOG, its wait over

    def _end_stream(self, op: Op, end: bytes | OSError) -> None:
        # EOF or an error ends a receive stream: its op is done, its end
        # handler hears why.
        end_handler = op.end_handler
        assert end_handler is not None   # start_recv set it
        self._ops.pop(op)
        end_handler(end)

    def _schedule_held(self, stream: RecvStream) -> None:
        # In a callback of its own: start_recv's caller hears nothing before
        # start_recv returns.
        if not stream.scheduled:
            stream.scheduled = True
            self.call_soon(self._deliver_held, stream)

    def _deliver_held(self, stream: RecvStream) -> None:
        stream.scheduled = False
        if (self._recv_streams.get(stream.fd) is not stream or stream.state is not RecvState.BACKLOG
                or stream.draining is not None):
            return   # closed or stopped since (what is held stays held), or still waiting
        op = stream.op
        assert op is not None   # BACKLOG: started
        held = stream.held
        while held and stream.op is op:   # (a handler may stop or close the stream)
            item = held.pop(0)
            if item.__class__ is bytes and item:
                assert op.handler is not None   # a live stream always has one
                op.handler(item)   # BACKLOG -> BACKLOG
                continue
            # BACKLOG -> IDLE: the held EOF or error ends the stream.
            del self._recv_streams[stream.fd]
            stream.op = None
            self._end_stream(op, item)
            return
        if stream.op is op:
            # BACKLOG -> ARMED: all that was held is delivered.
            stream.state = RecvState.ARMED
            self._submit(self._prep_recv_multishot(op.fd, self._bgid, 0, op.id))

    def recv(self, fd: int, nbytes: int, handler, timeout: float | None = None) -> None:
        # The deadline is a linked timeout SQE (IORING_OP_LINK_TIMEOUT).
        stream = self._no_reader_yet(fd)
        if stream is not None and stream.state is RecvState.STOPPING:
            raise BusyResourceError(f"the receive stream on fd {fd} is still stopping; "
                                    "use start_recv to resume it")
        if stream is not None:
            # HELD -> HELD or IDLE: the first thing held is this recv's answer.
            item = stream.held.pop(0)
            self._settle(stream)
            self.call_soon(handler, item)
            return
        op = self._ops.add(OpKind.RECV, fd, handler, self._on_recv)
        op.buf = bytearray(nbytes)
        op.pin = pin_writable(op.buf)
        self._readers[fd] = op
        if timeout is None:
            self._submit(self._ring.prep_recv(fd, op.pin, nbytes, 0, op.id))
        else:
            op.state = self._ring.timespec(timeout)   # the kernel's until the CQE
            self._submit(self._ring.prep_recv_deadline(fd, op.pin, nbytes, 0, op.id, op.state))

    def _on_recv(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_recv(3): res is the byte count (0 at EOF) or -errno;
        # -ECANCELED that we did not ask for is the linked timeout firing.
        result: bytes | OSError
        if res >= 0:
            with memoryview(op.buf) as view:
                result = bytes(view[:res])   # (one copy: a bytearray slice is one more)
        elif res == -_ECANCELED and not op.cancelled and op.state is not None:
            result = os_error(errno.ETIMEDOUT)
        else:
            result = os_error(-res)
        if self._readers.get(op.fd) is op:
            del self._readers[op.fd]
        self._ops.pop(op)(result)

    # -- readiness -----------------------------------------------------------

    def watch(self, fd: int, writable: bool, handler, once: bool = False) -> None:
        # io_uring_prep_poll_add(3), one-shot and re-armed after each report:
        # a multishot poll reports edges, and select()'s users expect levels.
        self._check_open()
        key = (fd, writable)
        if key in self._watches:
            raise BusyResourceError(f"fd {fd} is watched already")
        op = self._ops.add(OpKind.WATCH, fd, handler, self._on_watch)
        op.state = _POLLOUT if writable else _POLLIN
        op.done = once   # (a WATCH's done: whether its first report ends it)
        self._watches[key] = op
        self._submit(self._ring.prep_poll_add(fd, op.state, op.id))

    def unwatch(self, fd: int, writable: bool) -> bool:
        op = self._watches.pop((fd, writable), None)
        if op is None:
            return False
        if self._parked.get(fd) is op:   # not in the ring: nothing to cancel there
            self._unpark_one(fd)
            self._ops.pop(op)
        else:
            self._cancel(op)
        return True

    def _on_watch(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_poll_add(3): res is the revents mask, or -errno.
        if op.cancelled:
            self._ops.pop(op)
            return
        handler = op.handler
        assert handler is not None
        if res > 0 and op.state == _POLLOUT and not res & (_POLLOUT | _POLL_ENDS):
            self._park(op)
            return
        if res < 0 or op.done:   # an error, or a watch for one report: over
            del self._watches[(op.fd, op.state == _POLLOUT)]
            self._ops.pop(op)
            handler(os_error(-res) if res < 0 else 0)
            return
        handler(0)
        if not op.cancelled:   # still wanted: ask again, answered at once if still ready
            self._submit(self._ring.prep_poll_add(op.fd, op.state, op.id))

    def _park(self, op: Op) -> None:
        # A write watch whose poll reported POLLRDHUP alone: io_uring adds
        # it to every poll's mask (IO_POLL_UNMASK in io_uring/poll.c), and
        # a peer's half-close lasts, so on a half-closed socket the poll
        # would complete at once each time it is armed, writable or not --
        # the loop spinning, and the watcher told to write into a full
        # buffer. Such a watch waits in an epoll instance of the loop's,
        # which reports only what it is asked; its fd is polled by the ring.
        if self._parked_epoll is None:
            self._parked_epoll = select.epoll()
            self.watch(self._parked_epoll.fileno(), False, self._on_parked)
        self._parked[op.fd] = op
        try:
            self._parked_epoll.register(op.fd, select.EPOLLOUT)
        except OSError as exc:   # (the fd closed meanwhile: the watch ends with why)
            del self._parked[op.fd]
            self._on_watch(op, -(exc.errno or errno.EBADF), 0)

    def _on_parked(self, res) -> None:
        # The epoll instance has reports: each goes to its watch as the
        # ring's poll would have (a write watch re-arms in the ring, and
        # parks again while the socket is half-closed and not writable).
        assert self._parked_epoll is not None
        for fd, events in self._parked_epoll.poll(0):
            op = self._parked.get(fd)
            self._unpark_one(fd)
            if op is not None:
                self._on_watch(op, events, 0)   # (EPOLL* and POLL* bits are the same)

    def _unpark_one(self, fd: int) -> None:
        self._parked.pop(fd, None)
        assert self._parked_epoll is not None
        with contextlib.suppress(OSError):
            self._parked_epoll.unregister(fd)

    # -- connect -------------------------------------------------------------

    def connect(self, sock: socket.socket, address, handler) -> None:
        # io_uring_prep_connect(3) waits for a non-blocking socket's
        # handshake itself; the sockaddr is the kernel's until the CQE.
        self._check_open()
        addr = sockaddr(sock.family, address)
        op = self._ops.add(OpKind.CONNECT, sock.fileno(), handler, self._on_connect)
        op.buf = addr
        op.pin = _pin(addr)
        self._submit(self._ring.prep_connect(op.fd, op.pin, len(addr), op.id))
        # Sent to the kernel now rather than at the next turn: the SYN goes
        # out when asked for, as connect(2) sends it (a caller may block in
        # the peer's accept() before this loop turns again).
        self._ring.submit()

    def _on_connect(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_connect(3): res is 0 or -errno.
        handler = self._ops.pop(op)
        assert handler is not None
        handler(0 if res >= 0 else os_error(-res))

    # -- send ----------------------------------------------------------------

    def send(self, fd: int, data, handler) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed")
        if data.__class__ is not bytes:
            data = bytes(data)   # the caller may change it while in flight
        if not data:
            self._ready.append((handler, (0,)))
            return
        op = self._ops.add(_SEND, fd, handler, self._on_send)
        op.buf = data
        op.pin = pin = _pin(data)
        if self._prep_send(fd, pin, len(data), _MSG_NOSIGNAL, op.id):
            self._ops.pop(op)
            raise _sq_full()

    def _on_send(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_send(3): res is the bytes sent, maybe fewer than
        # asked (then we continue from there), or -errno.
        result: int | OSError
        if res > 0:
            sent = op.done + res
            left = len(op.buf) - sent
            if left and not op.cancelled:
                op.done = sent
                self._submit(self._prep_send(op.fd, op.pin + sent, left, _MSG_NOSIGNAL, op.id))
                return
            result = sent
        else:
            result = os_error(-res if res else errno.EPIPE)
        cancelled = op.cancelled
        handler = self._ops.pop(op)
        if not cancelled:
            handler(result)

    # -- sendfile --------------------------------------------------------------

    def sendfile(self, fd: int, file_fd: int, offset: int, count: int, handler) -> None:
        # io_uring has no sendfile; a pipe stands in for it: each round is a
        # splice file -> pipe linked to a splice pipe -> socket (IOSQE_IO_LINK),
        # one submission, the bytes moved by the kernel alone.
        self._check_open()
        if count <= 0:
            self.call_soon(handler, 0)
            return
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        out = self._ops.add(OpKind.SENDFILE, fd, handler, self._on_sendfile)
        splice_in = self._ops.add(OpKind.SPLICE_IN, fd, None, self._on_splice_in)
        out.state = splice_in.state = Splice(file_fd, offset, count, pipe_r, pipe_w, splice_in)
        self._splice_round(out)

    def _splice_round(self, out: Op) -> None:
        st = cast(Splice, out.state)
        if st.in_pipe:   # the socket took less than the pipe held: send the rest
            self._submit(self._ring.prep_splice(st.pipe_r, -1, out.fd, -1, st.in_pipe, out.id, 0))
            return
        chunk = min(st.left, PIPE_CHUNK)
        self._submit(self._ring.prep_splice(st.file_fd, st.offset, st.pipe_w, -1, chunk,
                                            st.splice_in.id, IOSQE_IO_LINK))
        self._submit(self._ring.prep_splice(st.pipe_r, -1, out.fd, -1, chunk, out.id, 0))

    def _on_splice_in(self, op: Op, res: int, flags: int) -> None:
        # splice(2) file -> pipe: bytes now in the pipe, or -errno (then the
        # linked pipe -> socket half completes with -ECANCELED).
        st = cast(Splice, op.state)
        if res > 0:
            st.offset += res
            st.left -= res
            st.in_pipe += res
        elif res < 0:
            st.file_error = res   # for the other half to report

    def _on_sendfile(self, out: Op, res: int, flags: int) -> None:
        # splice(2) pipe -> socket: bytes sent, or -errno.
        st = cast(Splice, out.state)
        if st.file_error:
            res = st.file_error
        elif res == 0 and st.in_pipe:   # the socket took nothing: it is broken
            res = -errno.EPIPE
        if res >= 0 and not out.cancelled:
            st.in_pipe -= res
            st.sent += res
            if st.in_pipe or st.left:
                self._splice_round(out)
                return
        os.close(st.pipe_r)
        os.close(st.pipe_w)
        self._ops.pop(st.splice_in)
        handler = self._ops.pop(out)
        if res >= 0 and not out.cancelled:
            handler(st.sent)
        else:
            handler(with_sent(os_error(-res if res < 0 else errno.ECANCELED), st.sent))

    # -- send streams --------------------------------------------------------

    def open_send_stream(self, fd: int, handler) -> UringSendStream:
        self._check_open()
        if fd in self._send_streams:
            raise BusyResourceError(f"a send stream is already open on fd {fd}")
        wid = self._ring.writer_open(fd)
        stream = UringSendStream(self, fd, wid, handler)
        self._send_streams[fd] = stream
        by_wid = self._streams_by_wid
        if wid >= len(by_wid):
            by_wid.extend([None] * (wid + 1 - len(by_wid)))
        by_wid[wid] = stream
        return stream

    def _on_writer_report(self, op: Op, res: int, flags: int) -> None:
        # A writer's report (the C side settles every successful send itself),
        # flags & UIO_WRITER_ID_MASK naming it: res < 0 is the -errno of a
        # failed send, which ends the stream; with UIO_WRITER_LEVEL, res is
        # the bytes still buffered.
        if flags & UIO_PUMP_REPORT:
            self._on_pump_report(flags & UIO_WRITER_ID_MASK, res)
            return
        stream = self._streams_by_wid[flags & UIO_WRITER_ID_MASK]
        if stream is not None:   # else released in this batch: nobody listens
            stream.handler(res if flags & UIO_WRITER_LEVEL else os_error(-res))

    # -- close and cancel ----------------------------------------------------

    def close_fd(self, fd: int, handler=None) -> None:
        self._check_open()
        if fd in self._relays:
            self._end_relays(fd)
        reader = self._readers.pop(fd, None)
        if reader is not None:
            reader.cancelled = True   # a one-shot recv's handler gets its ECANCELED
        recv_stream = self._recv_streams.pop(fd, None)
        if recv_stream is not None:
            self._close_recv_stream(recv_stream)
        acceptor = self._acceptors.pop(fd, None)
        if acceptor is not None:
            acceptor.cancelled = True
        for writable in (False, True):
            watch = self._watches.pop((fd, writable), None)
            if watch is not None:
                watch.cancelled = True
        stream = self._send_streams.get(fd)
        if stream is not None:
            stream.close()
        # Hard link: the close runs after the cancel even when the cancel
        # finds nothing (-ENOENT), and in the same submission, before the fd
        # number can be reused by an accept.
        self._submit(self._ring.prep_cancel_fd(fd, IORING_ASYNC_CANCEL_ALL,
                                               IGNORED_USER_DATA, IOSQE_IO_HARDLINK))
        if handler is None:
            self._submit(self._ring.prep_close(fd, IGNORED_USER_DATA, 0))
        else:
            op = self._ops.add(OpKind.CLOSE, fd, handler, self._on_close)
            self._submit(self._ring.prep_close(fd, op.id, 0))

    def _on_close(self, op: Op, res: int, flags: int) -> None:
        # io_uring_prep_close(3): res is 0 or -errno.
        self._ops.pop(op)(0 if res >= 0 else os_error(-res))

    def _cancel(self, op: Op) -> None:
        op.cancelled = True
        self._submit(self._ring.prep_cancel64(op.id, 0, IGNORED_USER_DATA, 0))

    # -- wakeup --------------------------------------------------------------

    def _arm_wakeup(self) -> None:
        op = self._ops.add(OpKind.WAKEUP, self._wakeup_fd, None, self._on_wakeup)
        op.buf = self._wakeup_buf
        op.pin = pin_writable(op.buf)
        self._submit(self._ring.prep_read(self._wakeup_fd, op.pin, 8, 0, op.id))

    def _on_wakeup(self, op: Op, res: int, flags: int) -> None:
        # read(2) on the wakeup pipe: up to 8 of its bytes (what is left
        # completes the next read at once). The callbacks themselves are
        # already in the ready queue.
        if op.cancelled:
            self._ops.pop(op)
            return
        self._submit(self._ring.prep_read(self._wakeup_fd, op.pin, 8, 0, op.id))

    # -- plumbing ------------------------------------------------------------

    @property
    def incremental_buffers(self) -> bool:
        """Whether receive buffers are consumed piece by piece (Linux 6.12+)."""
        return self._bufs.incremental

    @property
    def ops(self) -> OpTable:
        """The in-flight operation table (for diagnostics and tests)."""
        return self._ops

    def _submit(self, rc: int) -> None:
        if rc:
            raise _sq_full()

    def _close_recv_stream(self, stream: RecvStream) -> None:
        # Any state -> CLOSED (the record dropped): nothing is delivered
        # after close_fd returns. A receive in the kernel posts its last to
        # nobody (_on_recv_stream finds no stream); one never submitted
        # (BACKLOG) is done now.
        for op in (stream.op, stream.draining):
            if op is not None:
                op.cancelled = True
                op.handler = op.end_handler = drop
        if stream.state is RecvState.BACKLOG and stream.op is not None:
            self._ops.pop(stream.op)
        stream.op = stream.draining = None
        stream.held = []

    def close(self) -> None:
        """Cancel everything in flight, wait (2 s at most) for the final CQEs,
        then free the buffer ring and the ring."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        for stream in list(self._send_streams.values()):
            stream.close()
        for recv_stream in self._recv_streams.values():
            self._close_recv_stream(recv_stream)
        self._recv_streams.clear()
        for op in self._ops.live():
            op.cancelled = True
            op.handler = op.end_handler = drop
        self._readers.clear()
        self._acceptors.clear()
        self._watches.clear()
        for op in self._parked.values():   # (not in the ring: none will complete)
            self._ops.pop(op)
        self._parked.clear()
        self._close_file_reads()   # (reads in C: they keep their buffers, nobody hears)
        for relay in self._pumps.values():
            relay.handler = None   # (each is cancelled with everything else)
        self._submit(self._ring.prep_cancel64(0, IORING_ASYNC_CANCEL_ANY, IGNORED_USER_DATA, 0))
        deadline = monotonic() + 2.0   # real time, whatever clock the loop was given
        while ((len(self._ops) or self._ring.writers_inflight() or self._file_reads_inflight())
               and monotonic() < deadline):
            self._poll(0.05)
        if len(self._ops):
            # The kernel still owns these buffers: leak them rather than free
            # memory it may write to.
            log.error("closing with %d operations still in flight", len(self._ops))
            _LEAKED.append((self._bufs, self._ops.live()))
        else:
            self._bufs.close()
        self._close_pumps()
        self._ring.close()
        if self._parked_epoll is not None:
            self._parked_epoll.close()
        super().close()


_LEAKED: list = []


def sockaddr(family: int, address) -> bytes:
    """``address`` (as the socket module takes it, resolved) as the kernel's
    struct sockaddr: what connect(2) reads. Raises ValueError for a family
    this does not know."""
    if family == socket.AF_INET:
        host, port = address[:2]
        return (struct.pack("=H", family) + struct.pack("!H", port)
                + socket.inet_pton(family, host) + bytes(8))
    if family == socket.AF_INET6:
        host, port, flowinfo, scope_id = (tuple(address) + (0, 0))[:4]
        return (struct.pack("=H", family) + struct.pack("!HI", port, flowinfo)
                + socket.inet_pton(family, host.partition("%")[0]) + struct.pack("=I", scope_id))
    if family == socket.AF_UNIX:
        path = address.encode() if isinstance(address, str) else bytes(address)
        return struct.pack("=H", family) + path + (b"" if path[:1] == b"\0" else b"\0")
    raise ValueError(f"connect: unsupported address family {family}")
