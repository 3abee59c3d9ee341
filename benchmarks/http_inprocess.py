"""The HTTP layer alone, without a loop or a kernel: the CPU a pipelined
request costs in ``serve http``'s protocol and in the minimal httptools
protocol of the HTTP baselines, fed the same 16-request chunk in process.

    .venv/bin/python benchmarks/http_inprocess.py [--chunks N] [--repeats R]

Each figure is the best of R repeats of N chunks (the least disturbed run
on a shared machine); the ratio is the one to read. protocols_bench.py
measures the same servers end to end, under wrk.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers"))

from _http_minimal import MinimalHttpProtocol  # noqa: E402
from uringio.http import HTTPProtocol, default_router  # noqa: E402

# What wrk sends with pipeline.lua: 16 GETs of / in one write.
CHUNK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n" * 16
REQUESTS_PER_CHUNK = 16


class Sink:
    """What both protocols use of a connection: write, close, loop.time,
    loop.call_later. It counts the bytes written."""

    class loop:
        @staticmethod
        def time():
            return time.monotonic()

        @staticmethod
        def call_later(delay, callback):
            class Timer:
                def cancel(self):
                    pass
            return Timer()

    def __init__(self):
        self.written = 0

    def write(self, data):
        self.written += len(data)

    def close(self):
        pass


def ns_per_request(make_protocol, chunks: int, repeats: int) -> tuple[float, int]:
    """Best ns per request over the repeats, and the bytes of one response."""
    best = float("inf")
    for _ in range(repeats):
        sink = Sink()
        protocol = make_protocol()
        protocol.connection_made(sink)
        feed = protocol.data_received
        start = time.perf_counter()
        for _ in range(chunks):
            feed(CHUNK)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed / (chunks * REQUESTS_PER_CHUNK) * 1e9)
        if sink.written == 0:
            raise SystemExit("a protocol wrote nothing: the request did not get through")
    return best, sink.written // (chunks * REQUESTS_PER_CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    router = default_router()
    rows = [("serve http (uringio.http)", lambda: HTTPProtocol(router)),
            ("minimal httptools protocol", MinimalHttpProtocol)]
    results = [(name, *ns_per_request(make, args.chunks, args.repeats)) for name, make in rows]
    for name, ns, size in results:
        print(f"{name:28s} {ns:7.0f} ns/request  ({size} bytes a response)")
    print(f"serve http / minimal: {results[0][1] / results[1][1]:.2f}x the CPU per request")


if __name__ == "__main__":
    main()
