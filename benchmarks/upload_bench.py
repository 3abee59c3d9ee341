"""Uploads: large request bodies read by an ASGI app, server by server.

    python benchmarks/upload_bench.py [--mib 64] [--requests 8] [--rounds 3]
                                      [--servers "uringio uring,uringio epoll,granian,uvicorn"]

Each server of asgi_bench.py runs ``servers/asgi_apps.py``'s ``upload`` app
(it reads the whole body and answers its length), one worker, pinned to
CPU 1. The client, on CPU 0, sends ``--requests`` POSTs of ``--mib`` MiB
with a Content-Length, one after another on one keep-alive connection,
from memory the kernel copies (``sendall`` of one block): after one
unmeasured request (the warm-up), it prints MiB/s, the server's CPU
seconds per GiB, and uringio (uring)'s per-round ratio to each other
server, rounds rotated.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asgi_bench as ab  # noqa: E402
import echo_bench as eb  # noqa: E402
import protocols_bench as pb  # noqa: E402

MiB = 1 << 20


def _post(sock: socket.socket, block: memoryview, mib: int) -> None:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % (mib * MiB))
    for _ in range(mib):
        sock.sendall(block)
    got = b""
    while not got.endswith(b"%d" % (mib * MiB)):
        chunk = sock.recv(4096)
        if not chunk:
            raise eb.RunFailed("the server closed the connection")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        raise eb.RunFailed(f"answered {got[:40]!r}")


def measure(server_name: str, mib: int, requests: int, logdir: Path) -> tuple[float, float]:
    port = pb.free_port()
    server = pb.start(ab.argv(server_name, "upload", port), port, logdir,
                      f"upload-{server_name}".replace(" ", "_"))
    try:
        with eb.pinned(pb.CLIENT_CPU):
            sock = socket.create_connection((eb.HOST, server.port))
            block = memoryview(bytes(MiB))
            _post(sock, block, mib)   # warm-up
            cpu0, start = server.cpu_seconds(), time.monotonic()
            for _ in range(requests):
                _post(sock, block, mib)
            wall, cpu = time.monotonic() - start, server.cpu_seconds() - cpu0
            sock.close()
    finally:
        server.stop()
    total = mib * requests
    return total / wall, cpu / (total / 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="uringio uring,uringio epoll,granian,uvicorn")
    args = parser.parse_args(argv)
    servers = args.servers.split(",")
    rates: dict[str, list[tuple[float, float]]] = {s: [] for s in servers}
    with tempfile.TemporaryDirectory(prefix="upload_bench.") as tmp:
        for rnd in range(args.rounds):
            shift = rnd % len(servers)
            for name in servers[shift:] + servers[:shift]:
                rates[name].append(measure(name, args.mib, args.requests, Path(tmp)))
    print(f"\nuploads: {args.requests} x {args.mib} MiB on one connection, "
          f"medians of {args.rounds} rounds")
    ours = rates.get("uringio uring")
    for name in servers:
        mibs = statistics.median(r[0] for r in rates[name])
        cpu = statistics.median(r[1] for r in rates[name])
        ratio = ""
        if ours and name != "uringio uring":
            paired = statistics.median(
                a[0] / b[0] for a, b in zip(ours, rates[name], strict=True))
            ratio = f"  uring/this {paired:.2f}x"
        print(f"  {name:16} {mibs:8,.0f} MiB/s  {cpu:5.2f} CPU s/GiB{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
