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

* epoll (``EpollRelay``, epoll/relay.py): wait until ``src`` is readable,
  splice in, splice out; when ``dst`` is full, wait until it is writable, then go on.
  The program makes each splice itself, when readiness says it will not
  block.
* io_uring (``UringRelay``, uring/relay.py): each step is one submission, a
  poll linked to its splice; the kernel waits and splices, and the loop
  hears only the splice's result.

For splice both sockets are made non-blocking: a splice must never wait
inside the kernel for a peer (on io_uring it would hold one of the
kernel's worker threads while it did).

``via="buffers"`` moves the bytes through the loop's own large buffers
instead of a pipe: receive into a buffer, send from that same buffer,
nothing copied in user memory and no Python per chunk on io_uring (a pump,
``_build/_core/uring_pumps.c``: the buffer is one the kernel picked from a
ring of them, handed back once the send has taken it all). Splice moves
pages, not bytes, but on io_uring each splice runs in a kernel worker
thread; which wins where is measured by ``benchmarks/proxy_bench.py``
(``docs/proxy.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import with_sent

# Bytes one splice asks for: the pipe's default size, 16 pages. A relay
# holds at most this much, whatever its peers do.
PIPE_CHUNK = 1 << 16

# Bytes one receive of a relay via buffers takes at most. Large, so that
# Python (epoll) or two SQEs (uring) per chunk cost nothing beside the
# kernel's copies; a relay holds at most a few of them.
RELAY_BUFFER = 1 << 20

# How a relay moves its bytes (``Loop.relay``'s ``via``).
VIAS = ("splice", "buffers")


def check_via(via: str) -> None:
    if via not in VIAS:
        raise ValueError(f"relay via {via!r}: expected one of {', '.join(VIAS)}")


def open_pipe(src: int, dst: int) -> tuple[int, int]:
    """A pipe for a relay between ``src`` and ``dst``, made non-blocking with it."""
    os.set_blocking(src, False)
    os.set_blocking(dst, False)
    return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)


class Relay:
    """One direction of bytes, ``src`` -> pipe (or buffer) -> ``dst``: the
    state both backends keep. ``in_pipe`` is what was spliced in and not yet
    out; ``total`` what ``dst`` has taken. A relay via buffers has no pipe
    (``pipe_r`` -1)."""

    __slots__ = ("src", "dst", "pipe_r", "pipe_w", "in_pipe", "total", "handler",
                 "cancelled", "waiting", "op", "poll", "held")

    def __init__(self, src: int, dst: int, handler: Callable[[Any], Any],
                 pipe: bool = True) -> None:
        self.src = src
        self.dst = dst
        if pipe:
            self.pipe_r, self.pipe_w = open_pipe(src, dst)
        else:   # (each backend sets the sockets' mode it needs)
            self.pipe_r = self.pipe_w = -1
        self.in_pipe = 0
        self.total = 0
        self.handler: Callable[[Any], Any] | None = handler
        self.cancelled = False
        self.waiting = -1      # epoll: the fd watched now (src or dst), -1 none
        self.op: Any = None    # uring: the splice's Op and its poll's (a pump: its id)
        self.poll: Any = None
        self.held: Any = None  # epoll via buffers: the bytes in_pipe counts

    def close_pipe(self) -> None:
        if self.pipe_r >= 0:
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
