"""What the atheris harnesses share: the setup, and how a byte stream is cut
into the pieces a connection might deliver it in.

Each harness reads its input as ``[seed byte] + stream``: the stream is what
a client sends, and the seed picks where it is cut (seed 0: a byte at a
time; otherwise pieces of random sizes drawn from random.Random(seed)), so
the committed seeds stay readable HTTP or RESP and the fuzzer still moves
the cut points."""

from __future__ import annotations

import logging
import os
import random
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))


class Finding(AssertionError):
    """An invariant a harness checks did not hold: the input is a finding."""


def check(condition: bool, what: str, *details) -> None:
    if not condition:
        raise Finding(what + "".join(f"\n  {d!r}" for d in details))


ONE_BYTE = [bytes([c]) for c in range(256)]   # the shared objects themselves
ALL_BYTES = bytes(range(256))


def check_singletons() -> None:
    """CPython shares one object for each 1-byte bytes value: C that writes
    into one (made by PyBytes_FromStringAndSize(p, 1)) changes that byte for
    the whole process."""
    if b"".join(ONE_BYTE) != ALL_BYTES:   # (one C call: this runs per input)
        for c, one in enumerate(ONE_BYTE):
            check(one[0] == c, "the interpreter's shared 1-byte bytes object was written to",
                  c, one)


def split(seed: int, stream: bytes) -> list[bytes]:
    """``stream`` cut into pieces as ``seed`` says (see the module docstring)."""
    if not stream:
        return []
    if seed == 0:
        return [stream[i:i + 1] for i in range(len(stream))]
    rng = random.Random(seed)
    most = max(1, len(stream) // rng.randint(1, 8))
    pieces, at = [], 0
    while at < len(stream):
        size = rng.randint(1, most)
        pieces.append(stream[at:at + size])
        at += size
    return pieces


class Records(logging.Handler):
    """Keeps the log records of a logger, for a harness to judge."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        log = logging.getLogger(logger)
        log.addHandler(self)
        log.setLevel(logging.DEBUG)
        log.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken


def main(test_one_input) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
