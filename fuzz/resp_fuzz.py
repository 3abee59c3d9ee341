#!/usr/bin/env python3
"""Fuzz the RESP server's parser (uringio/protocols/resp.py) differentially:
its fast path (the C framing check ``uio_resp_scan``, _build/protocols/resp_scan.c,
then one split) against its general parser alone, and whole against pieces.

Input: ``[seed] + bytes a client sends`` (fuzz/_common.py). Three
protocols, each with a store of its own, get the stream:
  fast   -- RespProtocol as it runs, fed the stream whole;
  slow   -- the same with _run_whole switched off, so every request goes
            through _parse, the parser that "handles and reports every case";
  pieces -- RespProtocol fed the stream cut where the seed says.
Invariants: no exception escapes data_received (a ProtocolError is answered
``-ERR Protocol error`` and closes, inside it); all three write the same
replies, close or not alike, and leave equal stores. (fuzz/resp_scan.c
checks the scanner alone, at C speed.)
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import check, main, split  # noqa: E402

with atheris.instrument_imports(include=["uringio.protocols.resp"]):
    from uringio.protocols import resp as R

# A clock that stands still: a PX 1 must not expire between the three runs.
R.monotonic = lambda: 1000.0


class Conn:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        check(not self.closed, "a reply written after close()", data[:200])
        self.data += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def slow_class():
    cls = R.resp_factory()

    def no_fast_path(self, buf, replies):
        return 0

    cls._run_whole = no_fast_path
    return cls


def run(cls, pieces: list[bytes]):
    proto = cls()
    proto._id = 1   # CLIENT ID and HELLO say it: the same for all three
    conn = Conn()
    proto.connection_made(conn)
    for piece in pieces:
        proto.data_received(piece)
    store = proto.store
    return bytes(conn.data), conn.closed, dict(store.data), sorted(store.expires)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    stream = data[1:]
    fast = run(R.resp_factory(), [stream])
    slow = run(slow_class(), [stream])
    check(fast == slow, "the fast path and the parser disagree", stream[:300], fast, slow)
    pieces = run(R.resp_factory(), split(data[0], stream))
    check(fast == pieces, "other replies when the requests come in pieces", stream[:300],
          fast, pieces)


if __name__ == "__main__":
    main(test_one_input)
