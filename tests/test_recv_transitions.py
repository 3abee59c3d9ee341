"""Random interleavings of a receive stream's transitions, on both backends.

What this guards: starting, stopping, pausing and closing a receive stream,
in any order and at any moment relative to the bytes arriving, must neither
lose, duplicate nor reorder a byte. On uring a stopped multishot receive may
still post bytes after ``stop_recv`` (the cancel only asks); those must be
kept and delivered first, through the new handler, by the next
``start_recv``. On epoll the unread bytes simply stay in the socket. After
``close_fd`` nothing more reaches the caller.

Each run is one connected pair on 127.0.0.1 driven by a seeded
``random.Random``: a few hundred steps, each a start or stop of the stream,
a stop from inside the data handler, a non-blocking client send of 1 B to
64 KiB, or a loop turn of a few milliseconds at most. The client's bytes
depend on their position in the stream (SHAKE-128 output), so a lost,
duplicated or reordered piece shows as a difference at a known offset. A
failing seed replays exactly, up to the kernel's timing.
"""

from __future__ import annotations

import hashlib
import random
import socket

import pytest

from conftest import connected_pair
from uringio import Protocol, Server, listen

MAX_CHUNK = 64 * 1024          # the largest single client send
PAYLOAD_SIZE = 2 << 20         # the whole stream; the random steps send part of it
STEPS = 300                    # random steps per run: bounded in count...
MAX_TURN = 0.003               # ...and each loop turn in time (seconds)
FINISH_TIMEOUT = 30.0          # sending the rest and reaching EOF

LOOP_SEEDS = range(8)
CONNECTION_SEEDS = range(5)

# How often each kind of step is drawn. Toggles are as common as sends and
# turns so that stops land while bytes are in flight, and several
# transitions often follow each other with no turn in between.
LOOP_STEPS = {"toggle": 3, "stop_in_handler": 1, "send": 3, "turn": 3}
CONNECTION_STEPS = {"pause": 2, "resume": 2, "pause_in_handler": 1, "send": 3, "turn": 3}


# -- the stream and its checks -----------------------------------------------

def payload(seed: int) -> bytes:
    """The client's whole stream for ``seed``: every byte depends on its
    position, and any 8 bytes of it almost surely occur only once, so where
    a wrong piece came from can be told (``describe_difference``)."""
    return hashlib.shake_128(b"uringio recv transitions %d" % seed).digest(PAYLOAD_SIZE)


def chunk_size(rng: random.Random) -> int:
    """1 B .. 64 KiB, log-uniform: single bytes, small messages and full
    64 KiB sends are all common."""
    return min(MAX_CHUNK, int(2 ** rng.uniform(0, 16)))


def turn_timeout(rng: random.Random) -> float:
    """Half the time a single turn that barely waits, else turns for up to
    3 ms, so the kernel sometimes has time to post bytes between two
    transitions and sometimes not. (``run_until`` with a timeout of 0 runs
    no turn at all, hence the microsecond.)"""
    return 1e-6 if rng.random() < 0.5 else rng.uniform(1e-6, MAX_TURN)


def turn(loop, timeout: float) -> None:
    """Run the loop's turns for ``timeout`` seconds, whatever arrives."""
    loop.run_until(lambda: False, timeout)


def describe_difference(got: bytes, want: bytes) -> str | None:
    """None when ``got == want``; else a line naming the first differing
    offset and, where the received bytes there occur elsewhere in ``want``,
    where they came from (earlier: duplicated; later: bytes were lost)."""
    if got == want:
        return None
    n = min(len(got), len(want))
    off = next((i for i in range(n) if got[i] != want[i]), n)
    line = (f"received {len(got)} bytes, sent {len(want)}: first difference at offset {off}: "
            f"got {got[off:off + 8].hex()}, want {want[off:off + 8].hex()}")
    probe = got[off:off + 8]
    if len(probe) == 8:
        found = want.find(probe)
        if found >= 0:
            what = "duplicated" if found < off else "lost in between"
            line += f"; the bytes received there were sent at offset {found} ({what})"
    return line


def assert_same_stream(got: bytes, want: bytes) -> None:
    """``got`` is exactly ``want``: nothing lost, duplicated or reordered."""
    problem = describe_difference(got, want)
    assert problem is None, problem


def assert_prefix(got: bytes, sent: bytes) -> None:
    """``got`` is a prefix of ``sent``: nothing duplicated or reordered (a
    close may cut the stream short, but never mix it up)."""
    assert len(got) <= len(sent), f"received {len(got)} bytes, only {len(sent)} were sent"
    assert_same_stream(got, sent[:len(got)])


class Sender:
    """The client side: a non-blocking socket sending ``data`` in pieces.
    What the kernel did not take is sent by a later call, never waited
    for: the test runs the loop on this same thread."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.data = data
        self.view = memoryview(data)
        self.sent = 0          # bytes the kernel took so far

    @property
    def sent_bytes(self) -> bytes:
        return self.data[:self.sent]

    def send(self, size: int) -> int:
        """Send up to ``size`` more bytes, as many as fit now."""
        piece = self.view[self.sent:self.sent + size]
        if not piece:
            return 0
        try:
            n = self.sock.send(piece)
        except BlockingIOError:
            return 0           # the socket buffers are full; later
        self.sent += n
        return n

    def send_rest(self) -> bool:
        """Send what fits of the rest; True once all of ``data`` is out.
        Used as a ``run_until`` predicate: the loop drains the server side
        between two calls."""
        while self.sent < len(self.data) and self.send(1 << 20):
            pass
        return self.sent == len(self.data)


# -- loop level: start_recv / stop_recv / close_fd ---------------------------

class RecvStream:
    """The server side of the pair: starts and stops the loop's receive
    stream on ``fd`` and records what its handlers see.

    Every ``start_recv`` gets fresh handlers tagged with a generation, so a
    chunk that reaches a stale handler, or arrives while the stream is
    stopped or after ``close_fd``, is recorded as a misdelivery rather than
    silently counted."""

    def __init__(self, loop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.received = bytearray()
        self.ends: list = []             # what the end handler got: b"" or OSError
        self.started = False
        self.closed = False
        self.generation = 0
        self.stop_on_next_chunk = False  # a stop from inside the data handler
        self.misdelivered: list[str] = []

    def start(self) -> None:
        self.generation += 1
        gen = self.generation
        self.started = True
        self.loop.start_recv(self.fd, lambda data: self._on_data(gen, data),
                             lambda end: self._on_end(gen, end))

    def stop(self) -> None:
        self.started = False
        self.loop.stop_recv(self.fd)

    def close(self) -> None:
        """``close_fd``: from its return on, no handler may run."""
        if not self.closed:
            self.closed = True
            self.started = False
            self.loop.close_fd(self.fd)

    def _check(self, gen: int, what: str) -> None:
        if self.closed:
            self.misdelivered.append(f"{what} after close_fd")
        elif not self.started:
            self.misdelivered.append(f"{what} while stopped")
        elif gen != self.generation:
            self.misdelivered.append(f"{what} to the handler of start {gen}, "
                                     f"not of the current start {self.generation}")

    def _on_data(self, gen: int, data: bytes) -> None:
        self._check(gen, f"{len(data)} bytes")
        self.received += data
        if self.stop_on_next_chunk and self.started:
            # As a protocol under backpressure does: on uring more CQEs of
            # this stream may follow in the same turn and must be held.
            self.stop_on_next_chunk = False
            self.stop()

    def _on_end(self, gen: int, end) -> None:
        self._check(gen, f"end {end!r}")
        self.ends.append(end)


def random_recv_steps(rng: random.Random, loop, stream: RecvStream, sender: Sender) -> None:
    """``STEPS`` random transitions, sends and loop turns."""
    kinds, weights = list(LOOP_STEPS), list(LOOP_STEPS.values())
    for _ in range(STEPS):
        kind = rng.choices(kinds, weights)[0]
        if kind == "toggle":
            if stream.started:
                stream.stop()
            else:
                stream.start()
        elif kind == "stop_in_handler":
            stream.stop_on_next_chunk = True
        elif kind == "send":
            sender.send(chunk_size(rng))
        else:
            turn(loop, turn_timeout(rng))


@pytest.mark.parametrize("seed", LOOP_SEEDS)
def test_random_start_stop_then_eof_delivers_every_byte_once_in_order(loop, seed):
    fd, client = connected_pair()
    stream = RecvStream(loop, fd)
    sender = Sender(client, payload(seed))
    try:
        random_recv_steps(random.Random(seed), loop, stream, sender)
        # The end: receive for good, send the rest, then EOF.
        stream.stop_on_next_chunk = False
        if not stream.started:
            stream.start()
        assert loop.run_until(sender.send_rest, FINISH_TIMEOUT), \
            f"the client could send only {sender.sent} of {len(sender.data)} bytes"
        client.shutdown(socket.SHUT_WR)
        assert loop.run_until(lambda: stream.ends, FINISH_TIMEOUT), \
            f"no EOF; {len(stream.received)} of {len(sender.data)} bytes received"
        assert stream.misdelivered == []
        assert stream.ends == [b""]
        assert_same_stream(bytes(stream.received), sender.data)
    finally:
        stream.close()
        client.close()


@pytest.mark.parametrize("seed", LOOP_SEEDS)
def test_random_start_stop_then_close_fd_delivers_a_prefix_and_goes_quiet(loop, seed):
    fd, client = connected_pair()
    stream = RecvStream(loop, fd)
    sender = Sender(client, payload(seed))
    try:
        rng = random.Random(seed)
        random_recv_steps(rng, loop, stream, sender)
        # Bytes in flight make the close race something: on uring a
        # started stream may have CQEs queued, a stopped one held bytes.
        sender.send(chunk_size(rng))
        stream.close()
        # Whatever the kernel still posts for the closed fd is dropped.
        for _ in range(5):
            turn(loop, 0.002)
        assert stream.misdelivered == []
        assert stream.ends == []     # close_fd ends a receive stream quietly
        assert_prefix(bytes(stream.received), sender.sent_bytes)
    finally:
        stream.close()
        client.close()


# -- connection level: pause_reading / resume_reading ------------------------

class StreamRecorder(Protocol):
    """Records the bytes a connection delivers, and pauses and resumes it
    for the test, which tracks the state itself to catch a delivery while
    paused."""

    def __init__(self) -> None:
        self.conn = None
        self.received = bytearray()
        self.paused = False
        self.pause_on_next_chunk = False
        self.eof = False
        self.lost: list = []
        self.misdelivered: list[str] = []

    def connection_made(self, conn) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        if self.paused:
            self.misdelivered.append(f"{len(data)} bytes while paused")
        if self.eof:
            self.misdelivered.append(f"{len(data)} bytes after EOF")
        self.received += data
        if self.pause_on_next_chunk:
            # Backpressure from inside the callback, as the echo server does.
            self.pause_on_next_chunk = False
            self.pause()

    def eof_received(self) -> None:
        self.eof = True   # returns None: the connection then closes

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)

    def pause(self) -> None:
        """``pause_reading``, also when already paused (must be a no-op)."""
        self.paused = True
        self.conn.pause_reading()

    def resume(self) -> None:
        """``resume_reading``, also when not paused (must be a no-op)."""
        self.paused = False
        self.conn.resume_reading()


def random_connection_steps(rng: random.Random, loop, proto: StreamRecorder,
                            sender: Sender) -> None:
    """``STEPS`` random pauses, resumes, sends and loop turns."""
    kinds, weights = list(CONNECTION_STEPS), list(CONNECTION_STEPS.values())
    for _ in range(STEPS):
        kind = rng.choices(kinds, weights)[0]
        if kind == "pause":
            proto.pause()
        elif kind == "resume":
            proto.resume()
        elif kind == "pause_in_handler":
            proto.pause_on_next_chunk = True
        elif kind == "send":
            sender.send(chunk_size(rng))
        else:
            turn(loop, turn_timeout(rng))


@pytest.mark.parametrize("seed", CONNECTION_SEEDS)
def test_random_pause_resume_reading_delivers_every_byte_once_in_order(loop, seed):
    protocols: list[StreamRecorder] = []

    def factory() -> StreamRecorder:
        protocols.append(StreamRecorder())
        return protocols[-1]

    server = Server(loop, factory, listen("127.0.0.1", 0)).start()
    client = None
    try:
        client = socket.create_connection(server.address, timeout=5)
        assert loop.run_until(lambda: protocols and protocols[0].conn, 5.0), "not accepted"
        proto = protocols[0]
        sender = Sender(client, payload(seed))
        random_connection_steps(random.Random(seed), loop, proto, sender)
        # The end: read for good, send the rest, then EOF.
        proto.pause_on_next_chunk = False
        proto.resume()
        assert loop.run_until(sender.send_rest, FINISH_TIMEOUT), \
            f"the client could send only {sender.sent} of {len(sender.data)} bytes"
        client.shutdown(socket.SHUT_WR)
        assert loop.run_until(lambda: proto.eof, FINISH_TIMEOUT), \
            f"no EOF; {len(proto.received)} of {len(sender.data)} bytes received"
        assert_same_stream(bytes(proto.received), sender.data)
        # eof_received returned None: the connection closes cleanly.
        assert loop.run_until(lambda: proto.lost, 5.0), "the connection did not close"
        assert proto.lost == [None]
        assert proto.misdelivered == []
    finally:
        server.close()
        if client is not None:
            client.close()
        turn(loop, 0.01)   # let the closes complete before the loop closes


def test_the_design_doc_names_the_states_of_the_code():
    """docs/design.md's tables of a receive stream's states and transitions
    use RecvState's names (and IDLE and CLOSED, which have no record)."""
    import os
    import re

    from conftest import REPO
    from uringio._core.uring.loop import RecvState
    with open(os.path.join(REPO, "docs", "design.md")) as f:
        section = f.read().split("## A receive stream's states", 1)[1].split("\n## ", 1)[0]
    states = set(RecvState.__members__) | {"IDLE", "CLOSED"}
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    described = {cells[0].strip() for cells in rows if len(cells) == 2} - {"state", "---"}
    assert described == states
    transitions = [cells for cells in rows if len(cells) == 4 and cells[0].strip() not in
                   ("from", "---")]
    named = {word for cells in transitions for word in re.findall(r"\b[A-Z]{4,}\b",
                                                                  cells[0] + cells[2])}
    assert named <= states and states - {"CLOSED"} <= {c[0].strip() for c in transitions} | {
        "CLOSED"}
