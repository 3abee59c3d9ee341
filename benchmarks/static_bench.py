"""Static files: read and written, or spliced, side by side.

    python benchmarks/static_bench.py [--sizes 1024,16384,65536,262144,1048576]
                                      [--rounds 3] [--duration 3]

``python -m uringio serve http --static DIR`` serves one file per size
under wrk (one thread, 100 connections -- 4 for files of 8 MiB and more --
one request at a time each), on
uring and on epoll, two ways: "read" (``--static-read`` above the size:
the file is read by a file operation -- an SQE on uring, a worker thread on
epoll -- and written with its response head) and "splice" (``--static-read
0``: the head is written, then the file goes by splice through a pipe on
uring, sendfile(2) on epoll). And nginx (one worker, ``sendfile on``) on
the same files, the anchor. Server on CPU 1, wrk on CPU 0, a fresh server
per run, rounds rotated; prints requests/s, medians, each "read" figure's
ratio to "splice" on the same backend, and each uringio figure's ratio to
nginx, paired per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import echo_bench as eb  # noqa: E402
import protocols_bench as pb  # noqa: E402

WAYS = {"read": lambda size: str(size), "splice": lambda size: "0"}
BIG_FILE = 8 << 20   # from this size on, wrk keeps 4 connections, not 100


def nginx_argv(port: int, tmp: Path, root: Path) -> list[str]:
    """nginx serving ``root`` at /static/, one worker, sendfile on."""
    conf = tmp / "nginx-static.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx-static.pid;
error_log {tmp}/nginx-static.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp};
    server {{
        listen {eb.HOST}:{port} reuseport;
        location /static/ {{ alias {root}/; default_type application/octet-stream; }}
    }}
}}
""")
    return ["nginx", "-c", str(conf), "-p", str(tmp), "#{port}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1024,16384,65536,262144,1048576")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--backends", default="uring,epoll")
    args = parser.parse_args(argv)
    pb.ensure_tools()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    console = Console(width=120)
    results: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="static_bench.") as tmp:
        root = Path(tmp) / "static"
        root.mkdir()
        for size in sizes:
            (root / f"f{size}").write_bytes(os.urandom(size))
        logdir = Path(tmp)
        servers = [(b, w) for b in backends for w in WAYS] + [("nginx", "sendfile")]
        for size in sizes:
            for rnd in range(args.rounds):
                shift = rnd % len(servers)
                for backend, way in servers[shift:] + servers[:shift]:
                    port = 0
                    if backend == "nginx":
                        port = pb.free_port()
                        argv = nginx_argv(port, logdir, root)
                    else:
                        argv = [sys.executable, "-m", "uringio", "serve", "http", "--backend",
                                backend, "--static", str(root), "--static-read",
                                WAYS[way](size), "--host", eb.HOST, "--port", "0"]
                    server = pb.start(argv, port, logdir, f"{backend}-{way}")
                    try:
                        # Files of many MiB: a few connections (100 of them
                        # would each wait seconds for a whole file).
                        big = size >= BIG_FILE
                        got = pb.run_wrk(server.port, 1, args.duration, server,
                                         path=f"/static/f{size}", conns=4 if big else 100,
                                         timeout=30 if big else 2)
                    finally:
                        server.stop()
                    results.setdefault((size, backend, way), []).append(got["rps"])
                    console.print(f"{size:>8} B round {rnd + 1} {backend:5} {way:6} "
                                  f"{got['rps']:>10,.0f} req/s")
    table = Table(title=f"static files, wrk -t1 -c100, median of {args.rounds}")
    table.add_column("size")
    for backend in backends:
        for way in WAYS:
            table.add_column(f"{backend} {way}", justify="right")
        table.add_column(f"{backend} read/splice", justify="right")
        table.add_column(f"{backend} splice/nginx", justify="right")
    table.add_column("nginx", justify="right")
    for size in sizes:
        row = [f"{size:,} B"]
        nginx = results[(size, "nginx", "sendfile")]
        for backend in backends:
            read, splice = results[(size, backend, "read")], results[(size, backend, "splice")]
            row += [f"{statistics.median(read):,.0f}", f"{statistics.median(splice):,.0f}",
                    f"{statistics.median(r / s for r, s in zip(read, splice, strict=True)):.2f}×",
                    f"{statistics.median(s / n for s, n in zip(splice, nginx, strict=True)):.2f}×"]
        table.add_row(*row, f"{statistics.median(nginx):,.0f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
