"""Run uringio's C paths over and over on a debug interpreter and fail if
anything they hold grows: references, memory blocks, malloc'd bytes, fds.

    bash scripts/leakcheck.sh [-n N] [SCENARIO...]     (it sets up .venv-dbg first)
    .venv-dbg/bin/python scripts/leakcheck.py [-n N] [SCENARIO...]

The scenarios, each the C path named and the Python around it as it runs
in a server:

    http          serve http's HTTPProtocol (_httpcore + llhttp) fed pipelined
                  requests in process, whole and in pieces: routes, query,
                  bodies by length and chunked, HTTP/1.0, 404, a handler that
                  raises (500), a bad request (400)
    asgi-BACKEND  the ASGI server's HttpProtocol (_asgicore + llhttp, the eager
                  tasks, _ready's loop) answering requests from loop callbacks,
                  on uringio's asyncio loop: at once, with a body, after the
                  app raised, after the app waited a turn
    resp          the RESP server fed pipelined batches: resp_scan's fast path,
                  and the parser for what it leaves (inline, binary, split)
    dispatcher    _fastpath's CQE dispatcher fed synthetic completions (stream
                  bytes, EOF, errors, a raising handler, an unknown
                  user_data), and its Writer type made and dropped
    writers       the C send streams of one ring (uio_write, uio_turn's flush
                  and reports): filled, sent (and failed), released with
                  bytes still queued
    ring          a ring set up, a NOP and a writer through uio_turn, closed
    echo-BACKEND  real sockets: a Server of EchoProtocol (Connection, the C
                  write path, the dispatcher on uring), clients that send
                  small and 64 KiB messages and close or reset
    aio-BACKEND   real sockets through uringio's asyncio loop: asyncio
                  streams against an asyncio Protocol echo server

BACKEND is uring and epoll (uring is left out, with a line saying why, where
io_uring cannot be set up; under URINGIO_REQUIRE_URING=1 that fails).

The measure. Each scenario runs a warm-up of N iterations (caches, free
lists, interned strings, the loop's own structures all reach their size),
then two measured rounds of N more; after each, with a full gc.collect(),
it takes four counts: sys.gettotalrefcount() (a debug interpreter's sum of
all reference counts), sys.getallocatedblocks() (every object and buffer
Python's allocator holds), glibc's bytes in use (mallinfo2: what C code
takes with malloc directly, which Python does not see -- liburing's and the
send streams' buffers) and the process's open fds. The check is the growth
from the end of round N to the end of round 2N; the table shows round N's
too.

The tolerance, from the structure rather than from timing: a leak of one
object, reference or fd per iteration grows its count by N over the round
(a malloc'd block by N times at least 32 bytes, glibc's smallest chunk);
everything else that may still change after the warm-up is bounded whatever
N is -- a free list that fills, a dict or list that resizes once more, the
Date line renewed each second, a timer heap's slack, the send streams'
buffer pools. So each count may grow by at most N / 8 (bytes: 32 N / 8),
eight times below the smallest leak,
and fds not at all: every iteration closes each fd it opens, and the kernel
hands out the lowest free one, so after a settled loop the set is the same.
Every iteration takes each branch of its scenario, so a leak on any branch
is a leak per iteration.

Before the scenarios, a canary leaks one object, one fd and one malloc'd
block per iteration: each measure must flag it, or the check is blind and
stops.

Exit status 0 when nothing grew, 1 when something did (the table says
what), 2 when this is not a debug interpreter, uringio is the checkout's,
the canary went unseen, or an extension built for the release interpreter
was loaded (its reference counting bypasses the debug total:
``release_extensions``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import ctypes
import gc
import logging
import os
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What one count may grow by over a round of N, as a fraction of the leak of
# one per iteration (N); and the smallest chunk glibc's malloc hands out.
SLACK_DIVISOR = 8
MALLOC_CHUNK = 32


# -- the four counts ----------------------------------------------------------

class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)
_mallinfo2 = _libc.mallinfo2
_mallinfo2.restype = _Mallinfo2


def malloc_bytes() -> int:
    """Bytes in use from glibc's malloc: in its arenas and mmapped chunks."""
    info = _mallinfo2()
    return info.uordblks + info.hblkhd


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


MEASURES = ("refs", "blocks", "malloc", "fds")


class Counts:
    """Three snapshots of the four counts, kept in a preallocated array so
    that taking one leaves no new object behind for the next to count."""

    def __init__(self) -> None:
        self.values = array.array("q", bytes(8 * 3 * len(MEASURES)))

    def take(self, at: int) -> None:
        gc.collect()
        base = at * len(MEASURES)
        self.values[base] = sys.gettotalrefcount()
        self.values[base + 1] = sys.getallocatedblocks()
        self.values[base + 2] = malloc_bytes()
        self.values[base + 3] = open_fds()

    def growth(self, start: int, end: int) -> list[int]:
        return [self.values[end * len(MEASURES) + i] - self.values[start * len(MEASURES) + i]
                for i in range(len(MEASURES))]


def tolerances(n: int) -> list[int]:
    return [n // SLACK_DIVISOR, n // SLACK_DIVISOR, MALLOC_CHUNK * n // SLACK_DIVISOR, 0]


def measure(run: Callable[[int], None], settle: Callable[[], None], n: int) -> Counts:
    """Warm up with ``run(n)``, then two measured rounds of ``run(n)``;
    ``settle()`` before each snapshot lets the loop finish what the round
    started (closes in flight)."""
    counts = Counts()
    for at in range(-1, 3):   # -1: the warm-up, not counted
        run(n)
        settle()
        if at >= 0:
            counts.take(at)
    return counts


async def measure_async(run, n: int) -> Counts:
    """``measure`` inside a running loop: ``await run(n)``; a few loop turns settle."""
    counts = Counts()
    for at in range(-1, 3):   # -1: the warm-up, not counted
        await run(n)
        for _ in range(5):
            await asyncio.sleep(0)
        if at >= 0:
            counts.take(at)
    return counts


# -- serve http: HTTPProtocol in process ---------------------------------------

class FakeConn:
    """What HTTPProtocol uses of a Connection (as tests/test_http.py's)."""

    class loop:
        @staticmethod
        def time() -> float:
            return time.monotonic()

        @staticmethod
        def call_later(delay, callback):
            return _NO_TIMER

    def __init__(self) -> None:
        self.written = 0

    def write(self, data) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass

    def write_eof(self) -> None:
        pass


class _NoTimer:
    def cancel(self) -> None:
        pass


_NO_TIMER = _NoTimer()

HTTP_REQUESTS = (
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    b"GET /q?x=1&y=two HTTP/1.1\r\nHost: a\r\nX-Trace-Id: 7\r\n\r\n"
    b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /echo HTTP/1.1\r\nhost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    b"GET /missing HTTP/1.1\r\nHost: d\r\n\r\n"
    b"GET /raise HTTP/1.1\r\nHost: d\r\n\r\n"
    b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
HTTP_BAD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNOT HTTP AT ALL\r\n\r\n"


def http_scenario() -> Callable[[int], None]:
    from uringio.http import HTTPProtocol, Response, default_router

    router = default_router()

    @router.route("/q")
    def query(request):
        return Response(b"q:" + request.query)

    @router.route("/raise")
    def raises(request):
        raise ValueError("handler bug")

    def run(n: int) -> None:
        for _ in range(n):
            for piece in (len(HTTP_REQUESTS), 7):
                conn = FakeConn()
                protocol = HTTPProtocol(router)
                protocol.connection_made(conn)
                for at in range(0, len(HTTP_REQUESTS), piece):
                    protocol.data_received(HTTP_REQUESTS[at:at + piece])
                protocol.connection_lost(None)
                assert conn.written > 1000, conn.written
            conn = FakeConn()
            protocol = HTTPProtocol(router)
            protocol.connection_made(conn)
            protocol.data_received(HTTP_BAD)
            protocol.connection_lost(None)
    return run


# -- the ASGI server's request path ---------------------------------------------

async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b""
    if scope["method"] == "POST":
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
    if path == "/raise":
        raise ValueError("app bug")
    if path == "/wait":
        await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok:" + body})


class AsgiSink:
    """The transport an in-process HttpProtocol writes to (tests/test_asgi.py's _Sink)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data) -> None:
        self.written += len(data)

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1)

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


ASGI_REQUESTS = (
    b"GET /now?a=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n",
)


def asgi_scenario(backend: str) -> Callable[[int], Counts]:
    import uringio
    from uringio.asgi.http import HttpProtocol, ServerState

    async def answered(proto, sink, request: bytes) -> None:
        # Fed from a plain callback, as the loop delivers data; over when
        # written and the request's task (if it had to wait) is done.
        loop = asyncio.get_running_loop()
        written = sink.written
        loop.call_soon(proto.data_received, request)
        for _ in range(10_000):
            await asyncio.sleep(0)
            if sink.written != written and not proto.server.tasks:
                return
        raise AssertionError(f"no answer to {request!r} within 10,000 turns")

    async def main(n: int) -> Counts:
        state = ServerState(asgi_app)   # one for all connections, as a worker's

        async def run(n: int) -> None:
            for _ in range(n):
                proto = HttpProtocol(state)
                sink = AsgiSink()
                proto.connection_made(sink)
                for request in ASGI_REQUESTS:
                    await answered(proto, sink, request)
                proto.connection_lost(None)

        try:
            return await measure_async(run, n)
        finally:
            state.stop_sweeping()

    def scenario(n: int) -> Counts:
        return uringio.run(main(n), backend=backend)

    return scenario


# -- the RESP scanner and parser ------------------------------------------------

RESP_BATCH = (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
              b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
              b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
              b"*3\r\n$4\r\nMGET\r\n$1\r\nk\r\n$1\r\nz\r\n"
              b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n"       # a CRLF in a value: the parser
              b"PING\r\n"                                   # inline: the parser
              b"*2\r\n$3\r\nDEL\r\n$1\r\nn\r\n"
              b"*1\r\n$4\r\nNOPE\r\n")


def resp_scenario() -> Callable[[int], None]:
    from uringio.resp import RespProtocol, resp_factory, resp_scan

    factory = resp_factory()   # one store, as a server's: the same keys each time
    cut = len(RESP_BATCH) // 3

    def run(n: int) -> None:
        for _ in range(n):
            for chunks in ((RESP_BATCH,), (RESP_BATCH[:cut], RESP_BATCH[cut:])):
                conn = FakeConn()
                protocol: RespProtocol = factory()
                protocol.connection_made(conn)
                for chunk in chunks:
                    protocol.data_received(chunk)
                assert conn.written > 50, conn.written
            assert resp_scan(RESP_BATCH, len(RESP_BATCH)).lines == 24   # SET INCR GET MGET
            conn = FakeConn()
            protocol = factory()
            protocol.connection_made(conn)
            protocol.data_received(b"*1\r\n$x\r\n")          # a protocol error: closes
    return run


# -- the CQE dispatcher and the writers ------------------------------------------

def dispatcher_scenario() -> Callable[[int], None]:
    from uringio._core.uring import ring as ring_mod
    from uringio._core.uring.ops import Op, OpKind

    ffi, lib = ring_mod.ffi, ring_mod.lib
    more, shift = ring_mod.IORING_CQE_F_MORE, ring_mod.IORING_CQE_BUFFER_SHIFT
    size, count = 64, 4
    events: list = []
    slots = [Op(i) for i in range(4)]
    for op in slots:
        op.kind = int(OpKind.RECV_STREAM)
        op.handler = events.append
        op.on_complete = lambda op, res, flags: events.append(res)

    def boom(data):
        raise ValueError("handler bug")

    bufs = ffi.new("char[]", size * count)
    cqes = ffi.new("int64_t[]", 3 * 64)
    writers = ffi.gc(lib.uio_writers_new(5), lib.uio_writers_destroy)

    def address(cdata) -> int:
        return int(ffi.cast("uintptr_t", cdata))

    memory = ring_mod.RingMemory(address(cqes), 64, address(writers),
                                 address(ffi.addressof(lib, "uio_write")))
    memory.attach_buffers(address(bufs), size, count)
    dispatch = ring_mod.Dispatcher(memory, slots, Op, int(OpKind.RECV_STREAM))

    def post(*triples) -> int:
        for i, (user_data, res, flags) in enumerate(triples):
            cqes[3 * i:3 * i + 3] = [user_data, res, flags]
        return len(triples)

    def run(n: int) -> None:
        for _ in range(n):
            # Stream bytes from each buffer, EOF, an error, a last CQE.
            dispatch(0, post((1, 5, 0 << shift | more), (2, size, 1 << shift | more),
                             (3, 0, 0), (1, -104, 0), (2, 7, 2 << shift)))
            slots[3].handler = boom
            try:
                dispatch(0, post((3, 1, 3 << shift | more)))
            except ValueError:
                pass
            slots[3].handler = events.append
            try:
                dispatch(0, post((9, 1, 0)))
            except IndexError:
                pass
            events.clear()
            # A Writer made and dropped (its writes are the writers scenario's:
            # without a ring's turn to send them they would only pile up).
            wid = lib.uio_writer_open(writers, -1)
            ring_mod.Writer(memory, wid)
            lib.uio_writer_release(writers, wid)
    return run


def writers_scenario() -> Callable[[int], None]:
    from uringio._core.uring.ring import Ring

    ring = Ring(8, 16)
    small, big = b"abc", b"x" * 5000

    def run(n: int) -> None:
        for _ in range(n):
            # Bytes queued twice (pending, then grown), sent by the turn: to
            # fd -1, so the send fails and its report comes back as a CQE;
            # a later write returns the error; a second writer is released
            # with bytes still queued.
            wid = ring.writer_open(-1)
            write = ring.writer(wid)
            assert write(small) == 3 and write(big) == 5003
            try:
                write(bytearray(b"refused"))
            except TypeError:
                pass
            assert ring.writer_notify(wid, 0) == 0
            assert ring.turn(1, 1.0) == 1 and ring.cqe(0)[1] < 0
            assert write(small) < 0
            other = ring.writer_open(-1)
            ring.writer(other)(big)
            ring.writer_release(other)
            ring.writer_release(wid)
            assert ring.turn(0, 0) == 0
    return run


def ring_scenario() -> Callable[[int], None]:
    from uringio._core.uring.ring import Ring

    def run(n: int) -> None:
        for _ in range(n):
            ring = Ring(8, 16)
            wid = ring.writer_open(-1)
            write = ring.writer(wid)
            write(b"queued on fd -1, never sent")
            ring.prep_nop(7, 0)
            assert ring.turn(1, 1.0) >= 1 and ring.cqe(0)[0] == 7
            ring.writer_release(wid)
            ring.close()
    return run


# -- real sockets: the callback API ----------------------------------------------

MESSAGES = (b"ping\n", bytes(range(256)) * 256)


class Client:
    """A client that sends ``MESSAGES`` and takes the echo back in the loop's
    thread: its buffers have room for all of it both ways, so it sends at
    once and the loop never waits on it; ``step`` reads what came back."""

    def __init__(self, address) -> None:
        self.sock = socket.socket()
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
        self.sock.connect(address)
        payload = b"".join(MESSAGES)
        self.sock.sendall(payload)
        self.sock.setblocking(False)
        self.want = len(payload)
        self.got = 0

    def step(self) -> bool:
        try:
            while self.got < self.want:
                chunk = self.sock.recv(self.want)
                if not chunk:
                    raise ConnectionError("closed before the echo came back")
                self.got += len(chunk)
        except BlockingIOError:
            pass
        return self.got == self.want

    def close(self, reset: bool) -> None:
        if reset:   # SO_LINGER 0: the server gets ECONNRESET, not EOF
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def echo_scenario(backend: str):
    from uringio import open_loop
    from uringio.net import Server, listen
    from uringio.protocols.apps import EchoProtocol

    loop = open_loop(backend)
    listener = listen("127.0.0.1", 0)
    server = Server(loop, EchoProtocol, listener).start()
    address = listener.getsockname()

    def drive(until: Callable[[], bool], what: str) -> None:
        # Turns that do not wait: the client is in this thread, and a turn
        # that slept its whole timeout while the client's bytes sat unread
        # would only make this slow (epoll flushes writes after its wait).
        # Bounded by a count of turns, not by time.
        for _ in range(1_000_000):
            if until():
                return
            loop.run_once(0)
        raise AssertionError(what)

    def run(n: int) -> None:
        for _ in range(n):
            for reset in (False, True):
                client = Client(address)
                drive(client.step, "the echo did not come back")
                client.close(reset)
                drive(lambda: not server.connections, "the server kept the connection")
                del client

    def settle() -> None:
        for _ in range(5):
            loop.run_once(0)

    def close() -> None:
        server.close()
        settle()
        loop.close()

    return run, settle, close


# -- real sockets: uringio's asyncio loop -----------------------------------------

class AioEcho(asyncio.Protocol):
    alive = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        AioEcho.alive += 1

    def data_received(self, data) -> None:
        self.transport.write(data)

    def eof_received(self):
        return None   # close

    def connection_lost(self, exc) -> None:
        AioEcho.alive -= 1
        self.transport = None


def aio_scenario(backend: str) -> Callable[[int], Counts]:
    import uringio

    payload = b"".join(MESSAGES)

    async def main(n: int) -> Counts:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(AioEcho, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()

        async def run(n: int) -> None:
            for _ in range(n):
                reader, writer = await asyncio.open_connection(*address)
                writer.write(payload)
                await writer.drain()
                assert await reader.readexactly(len(payload)) == payload
                writer.close()
                await writer.wait_closed()
                for _ in range(10_000):
                    if not AioEcho.alive:
                        break
                    await asyncio.sleep(0)
                assert not AioEcho.alive, "the server kept the connection"

        try:
            return await measure_async(run, n)
        finally:
            server.close()
            await server.wait_closed()

    return lambda n: uringio.run(main(n), backend=backend)


# -- the canary: a leak of each kind, which each measure must see ------------------

def canary(n: int = 100) -> Counts:
    """Leak one object, one fd and one 64-byte malloc per iteration: each
    measure must flag it, or the check is blind here."""
    kept: list = []
    fds: list[int] = []
    malloc, free = _libc.malloc, _libc.free
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]

    def run(n: int) -> None:
        for _ in range(n):
            kept.append(malloc(64))                  # an int object, and the block
            fds.append(os.open(os.devnull, os.O_RDONLY))

    try:
        return measure(run, lambda: None, n)
    finally:
        for address in kept:
            free(address)
        for fd in fds:
            os.close(fd)


# -- running them ------------------------------------------------------------------

def uring_unavailable() -> str | None:
    from uringio import UringUnavailable, open_loop
    try:
        open_loop("uring").close()
    except UringUnavailable as exc:
        return str(exc)
    return None


def scenarios(uring_skip: str | None) -> Iterator[tuple[str, str | None]]:
    """(name, why it is skipped or None) for every scenario."""
    yield "http", None
    yield "resp", None
    for name in ("dispatcher", "writers", "ring"):
        yield name, uring_skip
    for kind in ("asgi", "echo", "aio"):
        for backend in ("uring", "epoll"):
            yield f"{kind}-{backend}", uring_skip if backend == "uring" else None


def run_scenario(name: str, n: int) -> Counts:
    kind, _, backend = name.partition("-")
    if kind in ("asgi", "aio"):
        make = asgi_scenario if kind == "asgi" else aio_scenario
        return make(backend)(n)
    if kind == "echo":
        run, settle, close = echo_scenario(backend)
        try:
            return measure(run, settle, n)
        finally:
            close()
    make = {"http": http_scenario, "resp": resp_scenario, "dispatcher": dispatcher_scenario,
            "writers": writers_scenario, "ring": ring_scenario}[kind]
    return measure(make(), lambda: None, n)


# Iterations per round: enough that N / 8 is well above the bounded settling
# (a few dozen), each round a few seconds on the debug interpreter.
DEFAULT_N = {"http": 2000, "resp": 2000, "dispatcher": 5000, "writers": 2000, "ring": 1000,
             "asgi": 2000, "echo": 2000, "aio": 1000}


def release_extensions() -> list[str]:
    """Extension modules loaded that were built for the release interpreter.

    They load into the debug one too (the same ABI since 3.8), but their
    Py_INCREF and Py_DECREF leave the debug total alone, so
    sys.gettotalrefcount() drifts with every object they let go: each one
    used by a scenario must be built here (scripts/leakcheck.sh builds cffi
    and httptools from source)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")   # .cpython-311d-x86_64-linux-gnu.so
    return sorted(path for module in list(sys.modules.values())
                  if (path := getattr(module, "__file__", None) or "").endswith(".so")
                  and not path.endswith(suffix))


def report(name: str, n: int, counts: Counts, t0: float) -> dict[str, str]:
    """Print a scenario's row: each count's growth over round N and over
    round 2N, and its tolerance (``!``: round 2N grew past it). Returns
    {measure: what grew} for the counts that grew past their tolerance."""
    first, second = counts.growth(0, 1), counts.growth(1, 2)
    cells, grew = [], {}
    for measure_name, a, b, limit in zip(MEASURES, first, second, tolerances(n), strict=True):
        cells.append(f"{a:>+8} {b:>+8} ({limit:>5}){'!' if b > limit else ' '}")
        if b > limit:
            grew[measure_name] = (f"{name}: {measure_name} grew by {b} over round 2N "
                                  f"(at most {limit})")
    print(f"{name:<13} {n:>5}  " + "  ".join(cells) + f"  {time.monotonic() - t0:7.1f}",
          flush=True)
    return grew


def main() -> int:
    names = [name for name, _ in scenarios(None)]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, help="iterations per round (default: per scenario)")
    parser.add_argument("scenario", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(names)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.scenario if name not in names]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; expected any of {', '.join(names)}")
    if not hasattr(sys, "gettotalrefcount"):
        print("leakcheck: needs a debug interpreter (sys.gettotalrefcount): "
              "run scripts/leakcheck.sh, which makes .venv-dbg", file=sys.stderr)
        return 2
    import uringio
    if Path(uringio.__file__).resolve().is_relative_to(ROOT / "uringio"):
        print(f"leakcheck: uringio is imported from the checkout ({uringio.__file__}), "
              "not built for this interpreter: run scripts/leakcheck.sh", file=sys.stderr)
        return 2
    logging.disable(logging.CRITICAL)   # the failing handlers log each failure
    uring_skip = uring_unavailable()
    if uring_skip and os.environ.get("URINGIO_REQUIRE_URING", "") not in ("", "0"):
        print(f"leakcheck: io_uring unavailable ({uring_skip}) and URINGIO_REQUIRE_URING=1",
              file=sys.stderr)
        return 1
    print(f"leakcheck: Python {sys.version.split()[0]} (debug), uringio from "
          f"{Path(uringio.__file__).parent}")
    print(f"{'scenario':<13} {'N':>5}  " + "  ".join(
        f"{m + ' +N/+2N (max)':>24}" for m in MEASURES) + "  seconds")
    started = time.monotonic()
    flagged = report("(canary)", 100, canary(), started)
    missed = [m for m in MEASURES if m not in flagged]
    if missed:
        print(f"leakcheck: the canary's leak of one per iteration went unseen by "
              f"{', '.join(missed)}: the measure is blind here", file=sys.stderr)
        return 2
    grew: list[str] = []
    for name, skip in scenarios(uring_skip):
        if args.scenario and name not in args.scenario:
            continue
        if skip:
            print(f"{name:<13} skipped: io_uring unavailable ({skip})")
            continue
        n = args.n or DEFAULT_N[name.partition("-")[0]]
        t0 = time.monotonic()
        grew += report(name, n, run_scenario(name, n), t0).values()
    print(f"leakcheck: {time.monotonic() - started:.0f} s")
    foreign = release_extensions()
    if foreign:
        print("leakcheck: the counts are not to be trusted: extensions built for the "
              "release interpreter were loaded:\n  " + "\n  ".join(foreign), file=sys.stderr)
        return 2
    if grew:
        print("leakcheck: GROWTH\n  " + "\n  ".join(grew))
        return 1
    print("leakcheck: nothing grew")
    return 0


if __name__ == "__main__":
    sys.exit(main())
