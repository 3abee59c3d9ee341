"""The completion interface: what every loop offers, in one place.

Both backends implement ``Loop``: ``ProactorLoop`` (backend "uring")
submits each operation to io_uring and the kernel does the IO;
``ReactorLoop`` (backend "epoll") waits for readiness and makes the
non-blocking system call itself. Everything above this module -- the
connection layer, the server models, the protocols -- is written against
``Loop`` and never knows which backend it runs on. The type checker holds
both backends to it (``backend.open_loop`` returns a ``Loop``).

An operation is *started* with a completion handler, and the handler runs
later, on the loop thread, with the result or an ``OSError`` carrying the
errno: never inside the call that started it, on either backend. A loop
belongs to one thread: other threads reach it through
``call_soon_threadsafe`` only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

# A completion handler: called once with the result or an OSError (for a
# stream: once per chunk, then once with its end).
Handler = Callable[[Any], Any]


class TimerHandle(Protocol):
    """What ``call_later`` returns."""

    def cancel(self) -> None:
        """The callback will not run (a no-op once it has)."""


class SendStream(Protocol):
    """An ordered, buffered byte stream to one socket (``open_send_stream``):
    writes made in one loop turn leave in one send, one send is in flight
    at a time, short sends are continued, and the caller hears only of
    failures and of the buffered level it asked for."""

    fd: int

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue ``data`` (copied now), behind everything written before.
        Returns the bytes buffered and not yet sent, or -errno of the send
        that failed earlier (already reported to the handler). Raises
        RuntimeError when called from another thread than the loop's, or
        once the loop is closed."""
        ...

    def write_bytes(self, data: bytes) -> int:
        """``write`` for ``bytes`` only: the per-message hot path."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel."""
        ...

    @property
    def sent(self) -> int:
        """Bytes the kernel has taken from this stream so far."""
        ...

    @property
    def sends(self) -> int:
        """Send operations (or system calls) this stream made (diagnostics)."""
        ...

    def notify(self, level: int) -> bool:
        """Call the stream's handler with the bytes still buffered once they
        fall to ``level`` or below. Returns True, and arms nothing, when
        that is already the case."""
        ...

    def close(self) -> None:
        """Release the stream: bytes not yet sent are dropped (a send in
        flight keeps its buffer until its completion), later writes return
        -EBADF."""
        ...


class Loop(Protocol):
    """The operations both backends offer, each documented here once."""

    backend: str
    """``"uring"`` or ``"epoll"``."""

    def engine_counters(self) -> dict[str, int]:
        """What the engine has done since the loop opened, each a count that
        only grows, read from what it counts anyway (nothing is counted
        for this): ``waits``, the times it entered the kernel to wait
        (``io_uring_enter``; ``epoll_wait``), and ``completions``, what
        those returned (CQEs; readiness events). On io_uring also
        ``submissions`` (SQEs), ``buffer_ring_empty`` (receives the
        provided buffers ran out for) and ``cq_overflows`` (CQEs the
        kernel had to hold back: the CQ was full)."""
        ...

    read_files_up_to: int
    """The size up to which sending a small file is faster by reading it
    (``file_read``) and writing its bytes than by ``sendfile``: 32 KiB on
    uring, where a read of a cached file completes at once and a splice
    runs in a kernel worker; 0 on epoll, where sendfile(2) is one call and
    a read a trip to the worker pool (benchmarks/static_bench.py)."""

    on_error: Callable[[object, BaseException], None] | None
    """Called with the handler or callback that raised and its exception;
    None (the default) logs them to the "uringio" logger. Either way the
    loop goes on."""

    # -- callbacks and timers ------------------------------------------------

    def time(self) -> float:
        """The loop's clock (monotonic seconds). Every timer reads time here
        and nowhere else, so a test can replace it."""
        ...

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread, in this turn or the
        next; callbacks run in the order they were given."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any],
                   *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once ``delay`` seconds have passed."""
        ...

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """``call_soon`` from any thread, or a signal handler: wakes the loop."""
        ...

    def add_signal_handler(self, signum: int, callback: Callable[..., Any],
                           *args: Any) -> None:
        """Run ``callback(*args)`` on the loop when ``signum`` arrives. From
        the main thread only."""
        ...

    def remove_signal_handlers(self) -> None:
        """Put back the signal handlers ``add_signal_handler`` replaced."""
        ...

    def wake_on_signals(self, on: bool) -> None:
        """Whether a signal's arrival ends the loop's wait at once (Python's
        ``signal.set_wakeup_fd`` on the loop's wakeup), so that a
        Python-level handler that queues work runs without waiting for IO.
        ``add_signal_handler`` turns it on, ``remove_signal_handlers`` off.
        From the main thread only."""
        ...

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop()``. A handler's exception is logged, never
        raised: one connection's failure never ends the loop. Raises
        LoopClosedError once closed, RuntimeError when already running (or,
        on uring, when called from another thread than the creator's)."""
        ...

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run turns until ``predicate()`` is true or ``timeout`` seconds
        pass; returns its last value. For tests and shutdown. Raises as
        ``run`` does."""
        ...

    def stop(self) -> None:
        """Make ``run()`` return after the current turn."""
        ...

    def run_once(self, max_wait: float | None) -> None:
        """One turn, for a loop that runs this one inside its own (uringio's
        asyncio event loop): wait for IO at most ``max_wait`` seconds
        (None: until something happens; not at all while callbacks are
        ready), dispatch the completions, fire the due timers, run the
        callbacks queued so far."""
        ...

    def is_running(self) -> bool:
        ...

    def is_closed(self) -> bool:
        ...

    def wakeup_fileno(self) -> int:
        """The descriptor ``call_soon_threadsafe`` (and a signal, while
        ``wake_on_signals``) makes readable, until the loop's next turn:
        for a thread that waits on the loop's behalf (trio's guest mode)."""
        ...

    def close(self) -> None:
        """Release the loop's resources. Operations still in flight are
        cancelled first, and their handlers are not called; send streams
        refuse writes from then on. Raises RuntimeError while running."""
        ...

    # -- accepting -----------------------------------------------------------

    def accept(self, sock: socket.socket, handler: Handler, once: bool = False,
               shared: bool = False) -> None:
        """Accept connections on listening ``sock``: ``handler(fd)`` for each
        new connection, until ``cancel_accept(sock)``; ``handler(OSError)``
        means accepting has stopped (the caller decides when to start
        again). With ``once``, one connection only: ``handler(fd)`` or
        ``handler(OSError)``, and accepting ends. ``shared``: other
        processes accept on ``sock`` too (``net.listeners.share``), and
        the kernel is to spread the connections over them. Raises
        BusyResourceError when an accept is already in flight on ``sock``."""
        ...

    def cancel_accept(self, sock: socket.socket) -> None:
        """Stop accepting on ``sock``. Connections taken off the listener
        meanwhile still go to the handler, in a later turn (it closes
        those it has nobody to serve): the listener may be shared, and a
        connection taken from it is no other process's to answer."""
        ...

    # -- receiving -----------------------------------------------------------

    def start_recv(self, fd: int, handler: Handler, end_handler: Handler | None = None) -> None:
        """Receive on ``fd`` until EOF, an error or ``stop_recv``:
        ``handler(bytes)`` per chunk, then ``handler(b"")`` at EOF or
        ``handler(OSError)``, which end the stream -- or, when
        ``end_handler`` is given, EOF and errors go to it, so ``handler``
        sees only data. Raises BusyResourceError when a receive is already
        in flight on ``fd``."""
        ...

    def stop_recv(self, fd: int) -> None:
        """Stop receiving on ``fd``. Nothing received is lost: the next
        ``start_recv(fd, ...)`` delivers it first. A one-shot ``recv`` is
        cancelled: its handler gets ``OSError(ECANCELED)``, or its data if
        that won the race."""
        ...

    def recv(self, fd: int, nbytes: int, handler: Handler,
             timeout: float | None = None) -> None:
        """One receive of at most ``nbytes``: ``handler(bytes)`` (``b""`` at
        EOF) or ``handler(OSError)``; ``OSError(ETIMEDOUT)`` when
        ``timeout`` seconds pass first. The buffer is the operation's until
        its completion, also after a cancel."""
        ...

    def connect(self, sock: socket.socket, address: Any, handler: Handler) -> None:
        """Connect ``sock`` (non-blocking, not yet connected) to ``address``,
        a resolved address of its family: ``handler(0)`` once connected, or
        ``handler(OSError)``."""
        ...

    # -- readiness -----------------------------------------------------------

    def watch(self, fd: int, writable: bool, handler: Handler, once: bool = False) -> None:
        """Call ``handler(0)`` whenever ``fd`` is readable (or, with
        ``writable``, writable), until ``unwatch``: level-triggered, as
        ``select`` is -- ready again while the condition holds.
        ``handler(OSError)`` ends the watch. For libraries that do their
        own IO (asyncio's ``add_reader``). With ``once``, the first report
        ends it: one wait for readiness (trio's ``wait_readable``).
        Raises BusyResourceError when ``fd`` is watched that way already."""
        ...

    def unwatch(self, fd: int, writable: bool) -> bool:
        """Stop a ``watch``; True if there was one."""
        ...

    # -- sending -------------------------------------------------------------

    def send(self, fd: int, data: bytes | bytearray | memoryview, handler: Handler) -> None:
        """Send all of ``data`` (copied unless it is bytes):
        ``handler(len(data))`` once the last byte is out, or
        ``handler(OSError)``."""
        ...

    def sendfile(self, fd: int, file_fd: int, offset: int, count: int,
                 handler: Handler) -> None:
        """Send ``count`` bytes of ``file_fd`` from ``offset`` to socket
        ``fd`` without copying them through Python: ``handler(count)`` or
        ``handler(OSError)``, whose ``sent`` attribute is how many bytes the
        socket took before the error. Raises BusyResourceError where the
        backend cannot queue it behind other sends on ``fd``."""
        ...

    def relay(self, src: int, dst: int, handler: Handler, via: str = "splice") -> None:
        """Move every byte socket ``src`` receives to socket ``dst``, never
        through Python (relay.py): ``via`` "splice", through a pipe, or
        "buffers", through the loop's own buffers. ``handler(total)`` at
        ``src``'s EOF, once all of it is out, or ``handler(OSError)``, whose
        ``sent`` is what ``dst`` took, when either side fails. ``src`` is
        read only as fast as ``dst`` takes. ``close_fd`` of either socket
        ends it: ``handler(OSError(ECANCELED))``. The sockets are set to the
        blocking mode the backend needs (non-blocking but for a uring pump)."""
        ...

    def open_send_stream(self, fd: int, handler: Handler) -> SendStream:
        """A ``SendStream`` to ``fd``. ``handler(OSError)`` when a send fails
        (the stream is then broken); ``handler(n)`` when the bytes still
        buffered fall to the level asked for with ``notify``. Raises
        BusyResourceError when ``fd`` has one already."""
        ...

    # -- files -----------------------------------------------------------------
    #
    # Readiness means nothing for a regular file (files.py says why): on
    # uring each of these is one SQE, many in flight from the loop's
    # thread; on epoll each is a system call on a small worker pool. Every
    # handler gets its result on the loop, or an OSError of the type the
    # built-in open() and os functions raise, naming the path.

    def file_open(self, path: bytes, flags: int, mode: int, handler: Handler) -> None:
        """openat(2) ``path`` (relative to the working directory) with
        ``os.open``'s ``flags`` (O_CLOEXEC is added) and ``mode``:
        ``handler(fd)``. Close it with ``close_fd``."""
        ...

    def file_read(self, fd: int, buf: bytearray | memoryview, offset: int,
                  handler: Handler) -> None:
        """Read into ``buf`` from ``offset`` (-1: the file's position, which
        the read advances): ``handler(n)``, fewer than ``len(buf)`` only at
        the end of the file (short reads are continued). The buffer is the
        operation's until its completion, also when nobody waits any more."""
        ...

    def file_write(self, fd: int, data: bytes | bytearray | memoryview, offset: int,
                   handler: Handler, sync: int = 0) -> None:
        """Write all of ``data`` (copied unless it is bytes) at ``offset``
        (-1: the file's position): ``handler(len(data))``. Short writes are
        continued. ``sync`` (``files.SYNC_DATA`` or ``SYNC_ALL``) follows the
        write with fdatasync or fsync (linked to it on uring); the handler
        hears only once that is done too."""
        ...

    def file_sync(self, fd: int, datasync: bool, handler: Handler) -> None:
        """fsync(2), or fdatasync(2) with ``datasync``: ``handler(0)``."""
        ...

    def file_stat(self, path: bytes | None, fd: int, follow: bool, handler: Handler) -> None:
        """statx(2) of ``path`` (following a final symlink when ``follow``),
        or of ``fd`` when ``path`` is None: ``handler(os.stat_result)``."""
        ...

    def file_allocate(self, fd: int, offset: int, length: int, handler: Handler) -> None:
        """fallocate(2) (mode 0, as posix_fallocate): ``handler(0)``."""
        ...

    def file_copy(self, src_fd: int, dst_fd: int, offset: int, count: int,
                  handler: Handler) -> None:
        """Copy ``count`` bytes of ``src_fd`` from ``offset`` (no more than
        it has there) to ``dst_fd`` at its position, without copying them
        through Python (splice through a pipe on uring, copy_file_range(2)
        on epoll): ``handler(count)``."""
        ...

    def path_unlink(self, path: bytes, directory: bool, handler: Handler) -> None:
        """unlink(2) ``path``, or rmdir(2) with ``directory``: ``handler(0)``."""
        ...

    def path_rename(self, old: bytes, new: bytes, handler: Handler) -> None:
        """rename(2): ``handler(0)``."""
        ...

    def path_mkdir(self, path: bytes, mode: int, handler: Handler) -> None:
        """mkdir(2): ``handler(0)``."""
        ...

    # -- closing -------------------------------------------------------------

    def close_fd(self, fd: int, handler: Handler | None = None) -> None:
        """Cancel every operation on ``fd``, then close it: ``handler(0)`` or
        ``handler(OSError)``. Pending one-shot operations get
        ``OSError(ECANCELED)``; a receive stream just ends; a send stream
        is released."""
        ...
