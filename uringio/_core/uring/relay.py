"""Relays as io_uring submissions (``_core/relay.py`` says what a relay is;
``epoll/relay.py`` is the readiness half).

Each step of a relay is one submission of two linked SQEs
(``uio_prep_poll_splice``): a poll, then the splice it guards. A step ends
in one CQE: the splice's (bytes moved, 0 at EOF, or -errno) when the poll
succeeded, which posts none (IOSQE_CQE_SKIP_SUCCESS); or the poll's, when
it failed (cancelled), and then the splice, cancelled with it, posts none
(the kernel's rule for a chain whose failed head skips on success). The
poll has an Op of its own for the relay's life, so that ``_cancel_relay``
can name it. Two ops per relay, recycled with it; nothing per step.

A relay via buffers is a pump (``_build/_core/uring_pumps.c``): its steps
are settled in C inside the turn, and Python hears it once, when it ends,
as a writer report with UIO_PUMP_REPORT. Its buffers are a ring of their
own, made with the first pump: large ones, so that a chunk is worth its
two SQEs, and never handed to a receive stream.
"""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Callable
from typing import cast

from ...errors import os_error
from ..relay import PIPE_CHUNK, RELAY_BUFFER, Relay, Relays, check_via
from .ops import IGNORED_USER_DATA, Op, OpKind, OpTable
from .ring import Ring

# The pumps' buffers: up to PUMP_BUFFERS of RELAY_BUFFER bytes, allocated
# as they are first needed. A pump stops receiving once it holds
# UIO_PUMP_HOLD buffers' worth of bytes that dst has not taken, or
# UIO_PUMP_PIECES buffers: it takes PUMP_BUFFERS / UIO_PUMP_PIECES relays
# with slow readers to hold every buffer (the others then wait for one to
# come back).
PUMP_BUFFERS = 32768   # the kernel's most for one ring
PUMP_BGID = 1

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_EAGAIN = -errno.EAGAIN


class UringRelay(Relays):
    """``relay`` on the uring loop (mixed into ``ProactorLoop``)."""

    # The loop's own (declared, not defined: see files.py, UringFiles).
    _ops: OpTable
    _ring: Ring
    _check_open: Callable[[], None]
    _submit: Callable[[int], None]

    _pumps_ready = False
    _pumps: dict[int, Relay]

    def relay(self, src: int, dst: int, handler, via: str = "splice") -> None:
        self._check_open()
        check_via(via)
        if via == "buffers":
            self._pump(src, dst, handler)
            return
        relay = Relay(src, dst, handler)
        relay.op = op = self._ops.add(OpKind.RELAY, src, handler, self._on_relay)
        relay.poll = self._ops.add(OpKind.RELAY_POLL, src, None, self._on_relay_poll)
        op.state = relay.poll.state = relay
        self._add_relay(relay)
        self._step(relay)

    def _step(self, relay: Relay) -> None:
        # Bytes in the pipe go out to dst; else the pipe is refilled from src.
        if relay.in_pipe:
            self._submit(self._ring.prep_poll_splice(
                relay.dst, _POLLOUT, relay.poll.id, relay.pipe_r, relay.dst,
                relay.in_pipe, relay.op.id))
        else:
            self._submit(self._ring.prep_poll_splice(
                relay.src, _POLLIN, relay.poll.id, relay.src, relay.pipe_w,
                PIPE_CHUNK, relay.op.id))

    def _on_relay_poll(self, op: Op, res: int, flags: int) -> None:
        # The poll failed (it was cancelled: by _cancel_relay, close_fd or
        # the loop's close), and its splice with it: the step is over.
        relay = cast(Relay, op.state)
        self._finish(relay, os_error(errno.ECANCELED if relay.cancelled else -res))

    def _on_relay(self, op: Op, res: int, flags: int) -> None:
        relay = cast(Relay, op.state)
        if relay.cancelled:
            self._finish(relay, os_error(errno.ECANCELED))
        elif res > 0:
            if relay.in_pipe:       # out to dst
                relay.in_pipe -= res
                relay.total += res
            else:                   # in from src
                relay.in_pipe = res
            self._step(relay)
        elif res == _EAGAIN:        # ready, then not by the time of the splice
            self._step(relay)
        elif res == 0 and not relay.in_pipe:   # src's EOF, everything out
            self._finish(relay, relay.total)
        else:   # an error, or dst took nothing: it is broken
            self._finish(relay, os_error(-res if res else errno.EPIPE))

    def _finish(self, relay: Relay, result) -> None:
        # The step's CQE was the relay's last: its ops go, then the relay.
        self._ops.pop(relay.poll)
        handler = self._ops.pop(relay.op)   # drop, if the loop is closing
        relay.op = relay.poll = None
        self._ended(relay, handler, result)

    def _cancel_relay(self, relay: Relay) -> None:
        # The step in flight ends: cancelling its poll cancels its splice,
        # whose CQE then finishes the relay. A splice already past its poll
        # is non-blocking, and ends by itself. A pump cancels what it has in
        # flight, and reports once that is over.
        if not relay.cancelled:
            relay.cancelled = True
            if relay.poll is None:
                self._ring.pump_cancel(relay.op)
            else:
                self._submit(self._ring.prep_cancel64(relay.poll.id, 0, IGNORED_USER_DATA, 0))

    # -- pumps ---------------------------------------------------------------

    def _pump(self, src: int, dst: int, handler) -> None:
        if not self._pumps_ready:
            self._ring.pumps_setup(PUMP_BGID, PUMP_BUFFERS, RELAY_BUFFER)
            self._pumps_ready = True
        relay = Relay(src, dst, handler, pipe=False)
        # Blocking: io_uring then waits for data or room itself, where a
        # non-blocking socket's -EAGAIN comes back for the pump to retry.
        os.set_blocking(src, True)
        os.set_blocking(dst, True)
        relay.op = self._ring.pump_open(src, dst)   # its id; relay.poll stays None
        self._pumps[relay.op] = relay
        self._add_relay(relay)

    def _on_pump_report(self, pid: int, res: int) -> None:
        # The pump's only report: it is over, nothing of it in flight.
        relay = self._pumps.pop(pid)
        relay.total = self._ring.pump_total(pid)
        self._ring.pump_release(pid)
        result = relay.total if res == 0 else os_error(-res)
        if relay.cancelled and res == 0:
            result = os_error(errno.ECANCELED)   # (its EOF came with the cancel)
        self._ended(relay, relay.handler, result)

    def _close_pumps(self) -> None:
        # The loop is closing: the pumps' buffers go once the kernel is done
        # with them (nothing in flight), else they are left to it.
        self._ring.pumps_teardown()
