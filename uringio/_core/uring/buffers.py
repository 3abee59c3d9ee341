"""Buffers handed to the kernel: pinning helpers and the provided-buffer ring.

The ownership rule: from submit until its final CQE, the kernel owns a buffer.
Pinning (``ffi.from_buffer``) gives a stable pointer and keeps the object alive
for as long as the pin is referenced; the loop's Op record holds the pin.
"""

from __future__ import annotations

from . import ring as ring_mod
from .ring import Ring, ffi, lib

# pin(data): a pointer to data's bytes, valid while the returned object
# lives; for a bytearray it also stops resizing while pinned. It is cffi's
# own function, not a wrapper: a send pins on every call.
pin = ffi.from_buffer

# unpack(pointer, n): n bytes copied out of C memory into a new bytes object.
unpack = ffi.unpack


def pin_writable(buf) -> object:
    """Like ``pin`` for a buffer the kernel writes into (recv, read)."""
    return ffi.from_buffer(buf, require_writable=True)


def unpin(pinned) -> None:
    """Drop the pin now rather than at garbage collection."""
    ffi.release(pinned)


class BufRing:
    """A provided-buffer ring (io_uring_register_buf_ring(3)): ``entries``
    buffers of ``size`` bytes, from which the kernel picks one per receive;
    ``initial`` of them are in circulation at first, and ``grow`` adds more.

    The kernel owns a buffer from the moment it is in the ring until a CQE
    names it (cqe.flags >> IORING_CQE_BUFFER_SHIFT) -- with ``incremental``,
    until the CQE that names it without IORING_CQE_F_BUF_MORE -- and the loop
    copies the bytes out and hands the id back in its next turn.
    """

    def __init__(self, ring: Ring, entries: int = 1024, size: int = 16384, bgid: int = 0,
                 initial: int = 16, incremental: bool = True) -> None:
        self._ring = ring
        self._br = ffi.new("struct uio_bufring *")
        res = lib.uio_bufring_setup(ring._ptr, self._br, entries, size, bgid, initial,
                                    incremental)
        if res < 0:
            raise ring_mod._unavailable(-res, "io_uring_register_buf_ring failed")
        self.entries = entries
        self.size = size
        self.bgid = bgid
        base = self._br.base
        self.address = int(ffi.cast("uintptr_t", base))   # of buffer 0
        # One char* per buffer id, so copying a buffer out is a single
        # foreign call: unpack(pointers[bid], nbytes).
        self.pointers = [base + i * size for i in range(entries)]
        # The C dispatcher copies receive streams' bytes out of these buffers.
        ring.memory.attach_buffers(self.address, size, entries)

    @property
    def incremental(self) -> bool:
        """Whether the kernel consumes each buffer piece by piece, many
        receives sharing one (Linux 6.12+, asked for and granted)."""
        return bool(self._br.incremental)

    @property
    def in_circulation(self) -> int:
        """Buffers the kernel may pick from: ``initial`` at first, more after
        each ``grow``, ``entries`` at most."""
        return self._br.added

    def grow(self) -> int:
        """Double the buffers in circulation (see uio_bufring_grow in
        _build/_core/uring_helpers.c for why they start few); returns how many
        were added, 0 once all ``entries`` are in."""
        return lib.uio_bufring_grow(self._br, self._br.added)

    def take(self, word: int, nbytes: int) -> bytes:
        """Copy out the ``nbytes`` a receive CQE reported, ``word`` being its
        flags as uio_turn gives them: the buffer id in bits 16-31, where the
        bytes start in it from bit 32 (_build/_core/uring_shared.h)."""
        return unpack(self.pointers[word >> 16 & 0xFFFF] + (word >> 32), nbytes)

    def close(self) -> None:
        if self._br.base != ffi.NULL:
            self._ring.memory.attach_buffers(0, 0, 0)
            self.pointers = []   # take() raises from now on, it reads no freed memory
            lib.uio_bufring_free(self._ring._ptr if not self._ring.closed else ffi.NULL, self._br)
