"""Ring: one ``struct io_uring``, its set-up, prep helpers and batched reaping.

This is the only module that imports the compiled binding (``buffers.py``
borrows its ``ffi`` for pinning). Names follow liburing so its man pages
apply: ``prep_recv`` is io_uring_prep_recv(3), ``IORING_CQE_F_MORE`` is the
kernel's flag of that name.

Each ``prep_*`` is the C helper bound to this ring with ``functools.partial``:
calling it costs one foreign call and no Python frame. The helpers return 0,
or -EBUSY when the SQ is full and the kernel would not take any of it.
"""

from __future__ import annotations

import errno
import os
import platform
from dataclasses import dataclass, field
from functools import partial

from ...errors import UringUnavailable

try:
    from .._fastpath import Dispatcher, RingMemory, Writer
    from .._liburing import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    ffi = lib = Dispatcher = RingMemory = Writer = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

if lib is not None:
    IORING_CQE_F_BUFFER = lib.IORING_CQE_F_BUFFER
    IORING_CQE_F_MORE = lib.IORING_CQE_F_MORE
    IORING_CQE_F_SOCK_NONEMPTY = lib.IORING_CQE_F_SOCK_NONEMPTY
    IORING_CQE_F_NOTIF = lib.IORING_CQE_F_NOTIF
    IORING_CQE_BUFFER_SHIFT = lib.IORING_CQE_BUFFER_SHIFT
    IOSQE_IO_LINK = lib.IOSQE_IO_LINK
    IOSQE_IO_HARDLINK = lib.IOSQE_IO_HARDLINK
    IOSQE_CQE_SKIP_SUCCESS = lib.IOSQE_CQE_SKIP_SUCCESS
    IORING_ASYNC_CANCEL_ALL = lib.IORING_ASYNC_CANCEL_ALL
    IORING_ASYNC_CANCEL_ANY = lib.IORING_ASYNC_CANCEL_ANY
    # The user_data layout: _build/_core/uring_shared.h states it once.
    UIO_WRITER_TAG = lib.UIO_WRITER_TAG
    UIO_READ_TAG = lib.UIO_READ_TAG
    UIO_OP_ID_LIMIT = lib.UIO_OP_ID_LIMIT
    UIO_WRITER_LEVEL = lib.UIO_WRITER_LEVEL
    UIO_WRITER_ID_MASK = lib.UIO_WRITER_ID_MASK
    UIO_PUMP_TAG = lib.UIO_PUMP_TAG
    UIO_PUMP_REPORT = lib.UIO_PUMP_REPORT
    UIO_RELEASED_USER_DATA = lib.UIO_RELEASED_USER_DATA
    UIO_PUMP_HOLD = lib.UIO_PUMP_HOLD
    UIO_PUMP_PIECES = lib.UIO_PUMP_PIECES
    UIO_CQE_WORDS = lib.UIO_CQE_WORDS

# The opcodes `python -m uringio info` reports on, by their liburing names.
OPCODES_OF_INTEREST = (
    "NOP", "READ", "WRITE", "SENDMSG", "RECVMSG", "TIMEOUT", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "CLOSE", "SEND", "RECV",
    "SPLICE", "PROVIDE_BUFFERS", "SHUTDOWN", "SEND_ZC", "SENDMSG_ZC",
    "OPENAT", "FSYNC", "STATX", "FALLOCATE", "UNLINKAT", "RENAMEAT", "MKDIRAT",
)

# Set-up flag sets, best first. SINGLE_ISSUER | DEFER_TASKRUN (6.1) runs
# completion work only when we enter the kernel to wait, in our own thread:
# no IPIs, no interruptions, and the work batches with the wait.
# COOP_TASKRUN (5.19) at least stops the kernel interrupting us for it.
_SETUP_CHOICES = (
    ("SINGLE_ISSUER", "DEFER_TASKRUN"),
    ("COOP_TASKRUN", "TASKRUN_FLAG"),
    (),
)

# CQEs per turn while a clump of file-read completions lasts. At 64 O_DIRECT
# reads in flight, against fio's io_uring engine in the same runs: 2 per
# turn 0.95-0.99x, 1 0.99x (a turn per read), 8 0.95x, all at once 0.81-0.85x
# (struct uio_pace in _build/_core/uring_helpers.c says why).
PACE_CHUNK = 2

# Kernel features that have no opcode to probe, with the release that added them.
MULTISHOT_ACCEPT_KERNEL = (5, 19)
MULTISHOT_RECV_KERNEL = (6, 0)
BUF_RING_KERNEL = (5, 19)


def _address(cdata) -> int:
    """A cffi pointer as an integer, for _fastpath (its owner stays with us)."""
    return int(ffi.cast("uintptr_t", cdata))


def _ring_closed(*args) -> None:
    """What the ring's bound helpers become once it is closed."""
    raise RuntimeError("the ring is closed")


def kernel_release() -> tuple[int, int]:
    """(major, minor) of the running kernel."""
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def liburing_version() -> str:
    """The liburing version the binding was built against."""
    if lib is None:
        return "not built"
    return ffi.string(lib.uio_liburing_version()).decode()


def _unavailable(err: int, what: str) -> UringUnavailable:
    """A UringUnavailable that says why, and what to do about it."""
    why = {
        errno.ENOSYS: "the kernel has no io_uring (too old, or built without it)",
        errno.EPERM: "io_uring is disabled here (sysctl kernel.io_uring_disabled, "
                     "or a container's seccomp profile)",
        errno.EACCES: "io_uring is not allowed for this user (kernel.io_uring_group)",
        errno.ENOMEM: "not enough locked memory for the ring (raise RLIMIT_MEMLOCK, "
                      "ulimit -l) or the system is out of memory",
    }.get(err, os.strerror(err))
    exc = UringUnavailable(err, f"{what}: {why}; use --backend epoll")
    return exc


@dataclass
class RingFeatures:
    """What this ring and kernel can do, for `info` and for the loop's choices."""
    setup_flags: tuple[str, ...] = ()
    kernel_features: tuple[str, ...] = ()
    opcodes: dict[str, bool] = field(default_factory=dict)
    multishot_accept: bool = False
    multishot_recv: bool = False
    buf_ring: bool = False


class Ring:
    """One io_uring instance.

    Raises UringUnavailable when the kernel refuses to set one up, with the
    reason (ENOSYS, EPERM, ENOMEM, ...) and the fix in the message.
    """

    def __init__(self, entries: int = 1024, cq_entries: int | None = None,
                 setup: tuple[str, ...] | None = None, writer_reports: int = 1) -> None:
        if lib is None:
            raise UringUnavailable(errno.ENOSYS, f"the uringio binding is not built "
                                   f"({_IMPORT_ERROR}); reinstall uringio or use --backend epoll")
        self._ptr = ffi.new("struct io_uring *")
        self._closed = True
        self._counters_raw = ffi.new("uint32_t[3]")
        self._counters_last = [0, 0, 0]   # a new ring's SQ tail and CQ head are 0
        self._counters = [0, 0, 0]
        features = ffi.new("unsigned *")
        cq = cq_entries if cq_entries is not None else entries * 4
        choices = (setup,) if setup is not None else _SETUP_CHOICES
        err = errno.EINVAL
        for names in choices:
            flags = 0
            for name in names:
                flags |= getattr(lib, "IORING_SETUP_" + name)
            err = -lib.uio_queue_init(self._ptr, entries, cq, flags, features)
            if err == 0:
                self.setup_flags = names
                break
            if err != errno.EINVAL:  # EINVAL: flags unknown to this kernel, try fewer
                break
        if err:
            raise _unavailable(err, "io_uring_queue_init failed")
        self._closed = False
        self.entries = entries
        self.cq_entries = cq
        self.kernel_features = features[0]
        self.fd = lib.uio_ring_fd(self._ptr)
        # A registered ring fd saves the kernel an fd lookup on every
        # io_uring_enter (5.18+); liburing uses it from now on by itself.
        self.registered_fd = lib.io_uring_register_ring_fd(self._ptr) == 1
        ptr = self._ptr
        self.prep_nop = partial(lib.uio_prep_nop, ptr)
        self.prep_accept = partial(lib.uio_prep_accept, ptr)
        self.prep_recv = partial(lib.uio_prep_recv, ptr)
        self.prep_recv_multishot = partial(lib.uio_prep_recv_multishot, ptr)
        self.prep_recv_deadline = partial(lib.uio_prep_recv_deadline, ptr)
        self.prep_send = partial(lib.uio_prep_send, ptr)
        self.prep_connect = partial(lib.uio_prep_connect, ptr)
        self.prep_poll_add = partial(lib.uio_prep_poll_add, ptr)
        self.prep_read = partial(lib.uio_prep_read, ptr)
        self.prep_close = partial(lib.uio_prep_close, ptr)
        self.prep_splice = partial(lib.uio_prep_splice, ptr)
        self.prep_poll_splice = partial(lib.uio_prep_poll_splice, ptr)
        self.prep_timeout = partial(lib.uio_prep_timeout, ptr)
        self.prep_cancel64 = partial(lib.uio_prep_cancel64, ptr)
        self.prep_cancel_fd = partial(lib.uio_prep_cancel_fd, ptr)
        self.sync_cancel = partial(lib.uio_sync_cancel, ptr)
        self.prep_openat = partial(lib.uio_prep_openat, ptr)
        self.prep_write = partial(lib.uio_prep_write, ptr)
        self.prep_fsync = partial(lib.uio_prep_fsync, ptr)
        self.prep_statx = partial(lib.uio_prep_statx, ptr)
        self.prep_fallocate = partial(lib.uio_prep_fallocate, ptr)
        self.prep_unlinkat = partial(lib.uio_prep_unlinkat, ptr)
        self.prep_renameat = partial(lib.uio_prep_renameat, ptr)
        self.prep_mkdirat = partial(lib.uio_prep_mkdirat, ptr)
        self._pace = ffi.new("struct uio_pace *")
        self._pace.chunk = PACE_CHUNK
        self._out_max = max(cq, 256)
        self._out = ffi.new("int64_t[]", UIO_CQE_WORDS * self._out_max)
        # Send streams ("writers") live in C (uio_write in uring_helpers.c);
        # their reports come as CQEs for user_data ``writer_reports``.
        self._writers = lib.uio_writers_new(writer_reports)
        if self._writers == ffi.NULL:
            self._closed = True
            lib.uio_queue_exit(self._ptr)
            raise MemoryError("cannot allocate the writer table")
        self.writer_notify = partial(lib.uio_writer_notify, self._writers)
        self.writer_buffered = partial(lib.uio_writer_buffered, self._writers)
        self.writer_sends = partial(lib.uio_writer_sends, self._writers)
        self.writer_sent = partial(lib.uio_writer_sent, self._writers)
        self.writer_held = partial(lib.uio_writer_held, self._writers)
        # Pumps (relays in C: _build/_core/uring_pumps.c) share the writers'
        # table and report user_data.
        self.pump_total = partial(lib.uio_pump_total, self._writers)
        self.pump_release = partial(lib.uio_pump_release, self._writers)
        self.pump_cancel = partial(lib.uio_pump_cancel, ptr, self._writers)
        # What the C per-message paths (Dispatcher, Writer) may touch, for
        # as long as this ring is open: close() closes it first.
        self.memory = RingMemory(_address(self._out), self._out_max, _address(self._writers),
                                 _address(lib.uio_writer_api_address()))

    @staticmethod
    def timespec(seconds: float):
        """A ``struct __kernel_timespec`` for timeout SQEs; keep it referenced
        until the operation's CQE."""
        sec = int(seconds)
        return ffi.new("struct __kernel_timespec *",
                       {"tv_sec": sec, "tv_nsec": int((seconds - sec) * 1e9)})

    # -- writers -------------------------------------------------------------

    def writer_open(self, fd: int) -> int:
        """A send stream for ``fd``: its id ``wid``. Reports come as CQEs for
        the ring's ``writer_reports`` user_data, with ``flags &
        UIO_WRITER_ID_MASK`` == wid: res < 0 when a send failed, or, with
        flags & UIO_WRITER_LEVEL, res is the bytes still buffered once an
        asked-for level was reached. ``writer(wid)`` is the callable that
        queues bytes on it."""
        self._check_open()
        wid = lib.uio_writer_open(self._writers, fd)
        if wid < 0:
            raise MemoryError("cannot allocate a writer")
        return wid

    def writer_release(self, wid: int) -> None:
        """Done with the writer; a send in flight keeps its buffer until its CQE."""
        if not self._closed:   # else the table is gone with the ring
            lib.uio_writer_release(self._writers, wid)

    def pumps_setup(self, bgid: int, most: int, size: int) -> None:
        """Give the pumps their buffers, before the first: a provided-buffer
        ring ``bgid`` of up to ``most`` buffers of ``size`` bytes, allocated
        as it grows (_build/_core/uring_pumps.c)."""
        res = lib.uio_pumps_setup(self._ptr, self._writers, bgid, most, size)
        if res < 0:
            raise OSError(-res, os.strerror(-res))

    def pumps_buffers(self, held: bool = False) -> int:
        """The pumps' buffers allocated so far, or (``held``) held by pumps now."""
        return lib.uio_pumps_buffers(self._writers, held) if not self._closed else 0

    def pumps_teardown(self) -> None:
        """Free the pumps' buffers; only once no pump op is in flight."""
        if not self._closed and lib.uio_writers_inflight(self._writers) == 0:
            lib.uio_pumps_teardown(self._ptr, self._writers)

    def pump_open(self, src: int, dst: int) -> int:
        """Start a pump from socket ``src`` to socket ``dst``: its id. It
        reports once, when it ends, as a CQE for ``writer_reports`` with
        ``flags`` = UIO_PUMP_REPORT | id; then ``pump_total(id)`` is what
        ``dst`` took, and ``pump_release(id)`` frees it."""
        self._check_open()
        pid = lib.uio_pump_open(self._ptr, self._writers, src, dst)
        if pid < 0:
            raise OSError(-pid, os.strerror(-pid))
        return pid

    def writers_inflight(self) -> int:
        self._check_open()
        return lib.uio_writers_inflight(self._writers)

    # -- completions ---------------------------------------------------------

    def submit(self) -> int:
        """Submit what is queued without waiting; returns how many SQEs went."""
        self._check_open()
        res = lib.uio_submit(self._ptr)
        if res < 0 and res not in (-errno.EINTR, -errno.EAGAIN, -errno.EBUSY):
            raise OSError(-res, os.strerror(-res))
        return max(res, 0)

    def submit_and_wait(self, wait_nr: int = 1, timeout: float | None = None,
                        bufring=None) -> list[int]:
        """Submit, wait for ``wait_nr`` completions (``timeout`` seconds at most;
        None waits without limit), and harvest every CQE that is ready.

        Returns a flat list ``[user_data, res, flags, user_data, res, flags, ...]``.
        Buffers of ``bufring`` named by the CQEs of the previous call go back to
        it first, in the same foreign call: the caller must copy the bytes out
        of a buffer before it calls again. A signal interrupting the wait
        returns what is ready (maybe nothing), so Python's signal handlers run.
        Raises OSError for any other failure.
        """
        n = self.turn(wait_nr, timeout, bufring)
        return ffi.unpack(self._out, UIO_CQE_WORDS * n) if n else []

    def turn(self, wait_nr: int = 1, timeout: float | None = None, bufring=None,
             clump: int = 0) -> int:
        """``submit_and_wait`` that leaves the CQEs in C memory: returns how
        many triples it wrote into the CQE array of ``memory`` (the loop's dispatcher
        reads them there, see _build/_core/fastpath.c). They stay valid until the
        next call. ``clump``: how many operations in flight complete in clumps
        (file reads); when the turn sleeps for them, what wakes it is handed
        out ``pace_chunk`` CQEs per turn until that many have gone out
        (``struct uio_pace`` in _build/_core/uring_helpers.c says why).
        Raises RuntimeError once the ring is closed."""
        if self._closed:
            raise RuntimeError("the ring is closed")
        n = lib.uio_turn(self._ptr, ffi.NULL if bufring is None else bufring._br,
                         self._writers, wait_nr,
                         -1 if timeout is None else int(timeout * 1e9),
                         self._pace, clump, self._out, self._out_max)
        if n < 0:
            if n == -errno.EINTR:
                return 0
            raise OSError(-n, os.strerror(-n))
        return n

    @property
    def pace_chunk(self) -> int:
        """CQEs per turn while a clump that woke the ring lasts (0: all at once)."""
        return self._pace.chunk

    @pace_chunk.setter
    def pace_chunk(self, chunk: int) -> None:
        if chunk < 0:
            raise ValueError(f"pace_chunk must be >= 0, not {chunk}")
        self._pace.chunk = chunk

    @property
    def pace_clumps(self) -> int:
        """How many turns slept for clumped completions and handed them out
        paced (diagnostics)."""
        return self._pace.clumps

    def cqe(self, i: int) -> tuple[int, int, int]:
        """Triple ``i`` of the last ``turn``."""
        base = UIO_CQE_WORDS * i
        return self._out[base], self._out[base + 1], self._out[base + 2]

    def writer(self, wid: int):
        """A callable that queues bytes on writer ``wid``: ``w(data)``
        returns the bytes buffered, or -errno once a send failed (one C call,
        see _build/_core/fastpath.c). It raises RuntimeError once the ring is
        closed, or when called from another thread than the ring's."""
        return Writer(self.memory, wid)

    # -- probing -------------------------------------------------------------

    def probe(self) -> RingFeatures:
        """What the kernel supports: opcodes by probe, the rest by release."""
        feats = RingFeatures(setup_flags=self.setup_flags)
        feats.kernel_features = tuple(
            name[len("IORING_FEAT_"):] for name in dir(lib)
            if name.startswith("IORING_FEAT_") and self.kernel_features & getattr(lib, name))
        probe = lib.io_uring_get_probe_ring(self._ptr)
        if probe != ffi.NULL:
            try:
                for name in OPCODES_OF_INTEREST:
                    op = getattr(lib, "IORING_OP_" + name)
                    feats.opcodes[name] = bool(lib.io_uring_opcode_supported(probe, op))
            finally:
                lib.io_uring_free_probe(probe)
        release = kernel_release()
        feats.multishot_accept = (feats.opcodes.get("ACCEPT", False)
                                  and release >= MULTISHOT_ACCEPT_KERNEL)
        feats.multishot_recv = feats.opcodes.get("RECV", False) and release >= MULTISHOT_RECV_KERNEL
        feats.buf_ring = release >= BUF_RING_KERNEL
        return feats

    # -- lifetime ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the ring is closed")

    def counters(self) -> tuple[int, int, int]:
        """SQEs prepared, CQEs consumed and CQEs that overflowed since the
        ring was set up: the ring's own 32-bit counters, read for free and
        widened here (which needs a call at least once per 2^32 of each)."""
        self._check_open()
        raw = self._counters_raw
        lib.uio_ring_counters(self._ptr, raw)
        totals = self._counters
        for i in range(3):
            totals[i] += (raw[i] - self._counters_last[i]) & 0xFFFFFFFF
            self._counters_last[i] = raw[i]
        return totals[0], totals[1], totals[2]

    def close(self) -> None:
        """Unmap the ring and close its fd. Only call once no operation is in
        flight (the loop waits for that): the kernel may still write buffers.
        From then on every use of the ring, and of the writers and
        dispatchers made on its memory, raises RuntimeError."""
        if not self._closed:
            self._closed = True
            self.memory.close()
            # Every helper bound to the ring's C memory (a partial over its
            # pointer) raises from now on, instead of touching memory the
            # kernel has unmapped or we have freed.
            for name, value in list(vars(self).items()):
                if isinstance(value, partial):
                    setattr(self, name, _ring_closed)
            lib.uio_queue_exit(self._ptr)
            if lib.uio_writers_inflight(self._writers) == 0:
                lib.uio_writers_destroy(self._writers)
            # else: the kernel may still read those buffers: leak them.

    def __del__(self) -> None:
        # A ring leaked by a crashed loop still gives its fd back.
        if not getattr(self, "_closed", True):
            self.close()
