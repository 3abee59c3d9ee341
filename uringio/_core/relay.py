"""Relays: bytes moved from one socket to another by the kernel alone.

``loop.relay(src, dst, handler)`` is what a TCP proxy does for each
direction: read what ``src`` sends, write it to ``dst``, until ``src``'s
EOF. Here the bytes never enter Python, nor even user memory: each step is
splice(2) ``src`` -> a pipe, then splice(2) pipe -> ``dst``, and the pipe's
pages are handed over, not copied. The pipe is also the backpressure: it
is refilled from ``src`` only once ``dst`` has taken all of it, so a slow
``dst`` slows ``src``'s sender through TCP flow control, and the relay
holds at most a pipe's worth of bytes.

The two backends do the same steps and differ, as everywhere, in who waits:

* epoll (``PollRelay``, here): wait until ``src`` is readable, splice in,
  splice out; when ``dst`` is full, wait until it is writable, then go on.
  The program makes each splice itself, when readiness says it will not
  block.
* io_uring (``RingRelay``, uring_relay.py): each step is one submission, a
  poll linked to its splice; the kernel waits and splices, and the loop
  hears only the splice's result.

Both sockets are made non-blocking: a splice must never wait inside the
kernel for a peer (on io_uring it would hold one of the kernel's worker
threads while it did).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from ..errors import os_error, with_sent

# Bytes one splice asks for: the pipe's default size, 16 pages. A relay
# holds at most this much, whatever its peers do.
PIPE_CHUNK = 1 << 16


def open_pipe(src: int, dst: int) -> tuple[int, int]:
    """A pipe for a relay between ``src`` and ``dst``, made non-blocking with it."""
    os.set_blocking(src, False)
    os.set_blocking(dst, False)
    return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)


class Relay:
    """One direction of bytes, ``src`` -> pipe -> ``dst``: the state both
    backends keep. ``in_pipe`` is what was spliced in and not yet out;
    ``total`` what ``dst`` has taken."""

    __slots__ = ("src", "dst", "pipe_r", "pipe_w", "in_pipe", "total", "handler",
                 "cancelled", "waiting", "op", "poll")

    def __init__(self, src: int, dst: int, handler: Callable[[Any], Any]) -> None:
        self.src = src
        self.dst = dst
        self.pipe_r, self.pipe_w = open_pipe(src, dst)
        self.in_pipe = 0
        self.total = 0
        self.handler: Callable[[Any], Any] | None = handler
        self.cancelled = False
        self.waiting = -1      # epoll: the fd watched now (src or dst), -1 none
        self.op: Any = None    # uring: the splice's Op and its poll's
        self.poll: Any = None

    def close_pipe(self) -> None:
        os.close(self.pipe_r)
        os.close(self.pipe_w)

    def failed(self, exc: OSError) -> OSError:
        """``exc`` carrying how many bytes ``dst`` took (``exc.sent``)."""
        return with_sent(exc, self.total)


class Relays:
    """The loop's relays by the fds they use, so that closing either fd
    ends them: a relay must never go on with an fd number that the next
    accept may reuse. Mixed into both loops, beside their own halves."""

    _relays: dict[int, list[Relay]]

    def _add_relay(self, relay: Relay) -> None:
        self._relays.setdefault(relay.src, []).append(relay)
        self._relays.setdefault(relay.dst, []).append(relay)

    def _remove_relay(self, relay: Relay) -> None:
        for fd in (relay.src, relay.dst):
            relays = self._relays.get(fd)
            if relays is not None:
                relays.remove(relay)
                if not relays:
                    del self._relays[fd]

    def _ended(self, relay: Relay, handler, result) -> None:
        # Nothing of the relay is in flight any more: forget it, close its
        # pipe, and tell ``handler`` (None: nobody to tell).
        self._remove_relay(relay)
        relay.close_pipe()
        if handler is not None:
            handler(result if result.__class__ is int else relay.failed(result))

    def _end_relays(self, fd: int) -> None:
        # close_fd(fd) is coming: each relay on fd ends, its handler told ECANCELED.
        for relay in list(self._relays.get(fd, ())):
            self._cancel_relay(relay)

    def _cancel_relay(self, relay: Relay) -> None:
        raise NotImplementedError


class PollRelay(Relays):
    """``relay`` on the epoll loop: readiness, then the splice calls."""

    # The loop's own (declared, not defined: see uring_files.RingFiles).
    _check_open: Callable[[], None]
    watch: Callable[[int, bool, Any], None]
    unwatch: Callable[[int, bool], bool]
    call_soon: Callable[..., Any]

    def relay(self, src: int, dst: int, handler) -> None:
        self._check_open()
        relay = Relay(src, dst, handler)
        try:
            self._wait(relay, src)
        except BaseException:
            relay.close_pipe()
            raise
        self._add_relay(relay)

    def _wait(self, relay: Relay, fd: int) -> None:
        # Watch fd: src for bytes to move, dst for room for them. Level
        # triggered, so a relay that keeps up with its src costs no
        # epoll_ctl per chunk: the watch on src stays.
        if relay.waiting == fd:
            return
        if relay.waiting >= 0:
            self.unwatch(relay.waiting, relay.waiting == relay.dst)
        relay.waiting = fd
        if fd == relay.src:
            self.watch(fd, False, lambda res: self._readable(relay, res))
        else:
            self.watch(fd, True, lambda res: self._writable(relay, res))

    def _readable(self, relay: Relay, res) -> None:
        if res.__class__ is not int:
            self._finish(relay, res)
            return
        try:
            n = os.splice(relay.src, relay.pipe_w, PIPE_CHUNK, flags=os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return   # readiness without bytes: wait again
        except OSError as exc:
            self._finish(relay, exc)
            return
        if n == 0:
            self._finish(relay, relay.total)
            return
        relay.in_pipe = n
        self._writable(relay, 0)

    def _writable(self, relay: Relay, res) -> None:
        if res.__class__ is not int:
            self._finish(relay, res)
            return
        while relay.in_pipe:
            try:
                n = os.splice(relay.pipe_r, relay.dst, relay.in_pipe,
                              flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                self._wait(relay, relay.dst)   # dst is full: wait for room
                return
            except OSError as exc:
                self._finish(relay, exc)
                return
            relay.in_pipe -= n
            relay.total += n
        self._wait(relay, relay.src)

    def _finish(self, relay: Relay, result) -> None:
        if relay.waiting >= 0:
            self.unwatch(relay.waiting, relay.waiting == relay.dst)
            relay.waiting = -1
        handler, relay.handler = relay.handler, None
        self._ended(relay, handler, result)

    def _drop_relays(self) -> None:
        # The loop is closing: handlers are not called (interface.py).
        for relay in {id(r): r for rs in self._relays.values() for r in rs}.values():
            relay.handler = None
            relay.close_pipe()
        self._relays.clear()

    def _cancel_relay(self, relay: Relay) -> None:
        # Told on the next turn, as every other cancelled operation is.
        handler, relay.handler = relay.handler, None
        self._finish(relay, 0)
        if handler is not None:
            self.call_soon(handler, relay.failed(os_error(errno.ECANCELED)))
