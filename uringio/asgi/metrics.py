"""``--metrics-port``: Prometheus text for the ASGI server -- requests by
status class, a latency histogram, open connections, and the engine's own
counters (``Loop.engine_counters``: io_uring_enter calls, SQEs, CQEs,
buffer-ring empties, CQ overflows; epoll_wait calls and events on epoll).

Each worker keeps its figures in its own slot of a ``Board``, a block of
shared memory made before the workers are forked, writing them there once
a second and when it stops; the process that made the board (the
supervisor, or the one server) answers ``GET /metrics`` with the sum of
the slots. A worker that is gone leaves its last figures in its slot until
a new worker claims it, which first adds them to the board's retired
totals: the counters only grow, as Prometheus expects.

Nothing here runs unless asked: without ``--metrics-port`` no request is
counted and no slot written.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import time
from collections.abc import Callable

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
ENGINE = ("waits", "submissions", "completions", "buffer_ring_empty", "cq_overflows")
BACKENDS = ("uring", "epoll")

# A slot: pid, backend (an index of BACKENDS), connections, then counters.
COUNTERS = (*(f"status_{c}" for c in STATUS_CLASSES), *(f"le_{b}" for b in BUCKETS),
            "duration_sum", "duration_count", *(f"engine_{b}_{name}" for b in BACKENDS
                                               for name in ENGINE))
FIELDS = ("pid", "backend", "connections", *COUNTERS)
SLOT = struct.Struct(f"{len(FIELDS)}d")
WRITE_EVERY = 1.0   # seconds between a worker's writes to its slot


class Board:
    """``slots`` slots of figures in shared memory (slot 0: the retired
    totals), made before fork so that every worker maps the same pages."""

    def __init__(self, slots: int) -> None:
        self.slots = slots + 1
        self._memory = mmap.mmap(-1, self.slots * SLOT.size)

    def read(self, slot: int) -> list[float]:
        return list(SLOT.unpack_from(self._memory, slot * SLOT.size))

    def write(self, slot: int, values: list[float]) -> None:
        SLOT.pack_into(self._memory, slot * SLOT.size, *values)

    def claim(self) -> int:
        """A slot for this process: a free one, or one whose process is
        gone (its figures added to the retired totals first). Workers start
        one at a time, so two never claim at once."""
        for slot in range(1, self.slots):
            pid = int(self.read(slot)[0])
            if pid and _alive(pid):
                continue
            if pid:
                self._retire(slot)
            values = [0.0] * len(FIELDS)
            values[0] = os.getpid()
            self.write(slot, values)
            return slot
        raise RuntimeError("no free metrics slot: more live workers than the board has slots")

    def _retire(self, slot: int) -> None:
        gone, totals = self.read(slot), self.read(0)
        for i in range(3, len(FIELDS)):
            totals[i] += gone[i]
        self.write(0, totals)

    def totals(self) -> tuple[dict[str, float], float, set[str]]:
        """The counters summed over every slot, the open connections of the
        live workers, and the backends they run."""
        sums = dict.fromkeys(COUNTERS, 0.0)
        connections = 0.0
        backends = set()
        for slot in range(self.slots):
            values = self.read(slot)
            for name, value in zip(COUNTERS, values[3:], strict=True):
                sums[name] += value
            pid = int(values[0])
            if slot and pid and _alive(pid):
                connections += values[2]
                backends.add(BACKENDS[int(values[1])])
        return sums, connections, backends


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerMetrics:
    """One worker's figures: requests counted as they are answered
    (``record``), written to its slot of ``board`` once a second and at
    ``stop()``, with the loop's engine counters and the open connections."""

    def __init__(self, board: Board, loop, connections: Callable[[], int]) -> None:
        self.board = board
        self.slot = board.claim()
        self._loop = loop
        self._engine = getattr(loop, "engine_counters", None)
        self._backend = BACKENDS.index(getattr(loop, "backend", "epoll"))
        self._connections = connections
        self.by_class = [0] * len(STATUS_CLASSES)
        self.buckets = [0] * len(BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tick()

    def record(self, status: int, seconds: float) -> None:
        if 100 <= status < 600:
            self.by_class[status // 100 - 1] += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        self.duration_sum += seconds
        self.duration_count += 1

    def _tick(self) -> None:
        self.write()
        self._timer = self._loop.call_later(WRITE_EVERY, self._tick)

    def write(self) -> None:
        engine = self._engine() if self._engine is not None else {}
        cumulative, running = [], 0
        for count in self.buckets:
            running += count
            cumulative.append(running)
        backend = BACKENDS[self._backend]
        values = [os.getpid(), self._backend, self._connections(), *self.by_class, *cumulative,
                  self.duration_sum, self.duration_count,
                  *(engine.get(name, 0) if b == backend else 0
                    for b in BACKENDS for name in ENGINE)]
        self.board.write(self.slot, values)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.write()


def render(board: Board) -> bytes:
    """The board as Prometheus text (exposition format 0.0.4)."""
    sums, connections, backends = board.totals()
    out = [
        "# HELP uringio_requests_total HTTP requests answered, by status class.",
        "# TYPE uringio_requests_total counter",
        *(f'uringio_requests_total{{status="{c}"}} {sums[f"status_{c}"]:.0f}'
          for c in STATUS_CLASSES),
        "# HELP uringio_request_duration_seconds From the app's start to the response's end.",
        "# TYPE uringio_request_duration_seconds histogram",
        *(f'uringio_request_duration_seconds_bucket{{le="{b}"}} {sums[f"le_{b}"]:.0f}'
          for b in BUCKETS),
        f'uringio_request_duration_seconds_bucket{{le="+Inf"}} {sums["duration_count"]:.0f}',
        f"uringio_request_duration_seconds_sum {sums['duration_sum']:.6f}",
        f"uringio_request_duration_seconds_count {sums['duration_count']:.0f}",
        "# HELP uringio_connections Open connections of the live workers.",
        "# TYPE uringio_connections gauge",
        f"uringio_connections {connections:.0f}",
    ]
    helps = {
        "waits": "Times the engine entered the kernel to wait (io_uring_enter; epoll_wait).",
        "submissions": "SQEs submitted (io_uring).",
        "completions": "Completions reaped (CQEs; epoll events).",
        "buffer_ring_empty": "Receives the provided-buffer ring ran out for (io_uring).",
        "cq_overflows": "CQEs the kernel held back, the CQ full (io_uring).",
    }
    for name in ENGINE:
        out += [f"# HELP uringio_engine_{name}_total {helps[name]}",
                f"# TYPE uringio_engine_{name}_total counter"]
        for backend in BACKENDS:
            if backend in backends or sums[f"engine_{backend}_{name}"]:
                if backend == "epoll" and name not in ("waits", "completions"):
                    continue
                out.append(f'uringio_engine_{name}_total{{backend="{backend}"}} '
                           f'{sums[f"engine_{backend}_{name}"]:.0f}')
    return ("\n".join(out) + "\n").encode()


def answer(request: bytes, board: Board) -> bytes:
    """The HTTP answer to one request for the metrics endpoint."""
    line = request.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
        body, status = render(board), b"200 OK"
        kind = b"text/plain; version=0.0.4; charset=utf-8"
    else:
        body, status, kind = b"GET /metrics\n", b"404 Not Found", b"text/plain"
    return (b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, kind, len(body), body))


SCRAPE_TIMEOUT = 2.0    # seconds a scrape may take to send its request
MAX_REQUEST = 8192      # bytes of a request read before it is answered anyway


class MetricsProtocol(asyncio.Protocol):
    """The endpoint on an asyncio loop (a server of one process): one
    request per connection, answered and closed; a client that has not
    sent its request within SCRAPE_TIMEOUT is cut off."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.buffer = b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._timer = asyncio.get_running_loop().call_later(SCRAPE_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer or len(self.buffer) > MAX_REQUEST:
            self._timer.cancel()
            self.transport.write(answer(self.buffer, self.board))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._timer.cancel()


class Endpoint:
    """The endpoint served from a process with no event loop (the
    supervisor's): ``serve_for(seconds)`` waits that long at most for a
    scrape, and answers it. One scrape at a time, its request read within
    SCRAPE_TIMEOUT all told: a client that dribbles bytes cannot hold the
    supervisor from its workers for longer."""

    def __init__(self, sock, board: Board) -> None:
        self.sock = sock
        self.board = board

    def serve_for(self, seconds: float) -> None:
        import select
        import socket

        ready, _, _ = select.select([self.sock], [], [], seconds)
        if not ready:
            return
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            deadline = time.monotonic() + SCRAPE_TIMEOUT
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) <= MAX_REQUEST:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    conn.settimeout(left)
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                conn.settimeout(SCRAPE_TIMEOUT)
                conn.sendall(answer(request, self.board))
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
