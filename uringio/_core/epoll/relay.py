"""Relays on the epoll loop: readiness, then the splice calls the program
makes itself (``_core/relay.py`` says what a relay is; ``uring/relay.py``
is the other half).

Via buffers, the splices become a read into the loop's one relay buffer
and a write from it, in the same callback: the buffer is free again for
the next relay unless ``dst`` would block, and only then are the bytes
left over copied, to wait for room.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from ...errors import os_error
from ..relay import PIPE_CHUNK, RELAY_BUFFER, Relay, Relays, check_via


class EpollRelay(Relays):
    """``relay`` on the epoll loop: readiness, then the splice calls."""

    # The loop's own (declared, not defined: see uring/files.py, UringFiles).
    _check_open: Callable[[], None]
    watch: Callable[[int, bool, Any], None]
    unwatch: Callable[[int, bool], bool]
    call_soon: Callable[..., Any]

    _relay_buffer: bytearray | None = None

    def relay(self, src: int, dst: int, handler, via: str = "splice") -> None:
        self._check_open()
        check_via(via)
        relay = Relay(src, dst, handler, pipe=via == "splice")
        if relay.pipe_r < 0:   # (open_pipe did it for splice)
            os.set_blocking(src, False)   # readiness, then calls that must not wait
            os.set_blocking(dst, False)
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
            if relay.pipe_r >= 0:
                n = os.splice(relay.src, relay.pipe_w, PIPE_CHUNK, flags=os.SPLICE_F_NONBLOCK)
            else:
                if self._relay_buffer is None:
                    self._relay_buffer = bytearray(RELAY_BUFFER)
                n = os.readv(relay.src, (self._relay_buffer,))
                relay.held = memoryview(self._relay_buffer)[:n]
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
                if relay.held is None:
                    n = os.splice(relay.pipe_r, relay.dst, relay.in_pipe,
                                  flags=os.SPLICE_F_NONBLOCK)
                else:
                    n = os.write(relay.dst, relay.held)
                    relay.held = relay.held[n:]
            except BlockingIOError:
                if relay.held is not None and relay.held.obj is self._relay_buffer:
                    relay.held = memoryview(bytes(relay.held))   # the loop's buffer moves on
                self._wait(relay, relay.dst)   # dst is full: wait for room
                return
            except OSError as exc:
                self._finish(relay, exc)
                return
            relay.in_pipe -= n
            relay.total += n
        relay.held = None
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
