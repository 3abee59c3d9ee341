"""uvicorn on each event loop: a raw ASGI "Hello, World!" app, side by side.

    python benchmarks/uvicorn_bench.py [--rounds 3] [--duration 4]

The same uvicorn (httptools parser, no access log) and the same app
(``servers/asgi_apps.py``, ``raw``), with ``--loop`` set to uringio's event loop on
each backend, uvloop, and asyncio's own; wrk -t1 -c100 without pipelining,
server and wrk pinned to their own CPUs, rounds rotated. Prints requests/s,
server CPU per request, and each median's ratio to ``--loop uvloop``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_bench as eb  # noqa: E402
import protocols_bench as pb  # noqa: E402

LOOPS = {
    "uringio uring": "uringio.aio:new_event_loop_uring",
    "uringio epoll": "uringio.aio:new_event_loop_epoll",
    "uvloop": "uvloop",
    "asyncio": "asyncio",
}
REFERENCE = "uvloop"


def uvicorn_argv(loop: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "asgi_apps:raw",
            "--app-dir", str(pb.BENCH / "servers"), "--loop", loop, "--http", "httptools",
            "--no-access-log", "--log-level", "warning", "--host", eb.HOST,
            "--port", str(port), "#{port}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    args = parser.parse_args(argv)
    pb.ensure_tools()
    rows: dict[str, list[dict]] = {name: [] for name in LOOPS}
    names = list(LOOPS)
    with tempfile.TemporaryDirectory() as tmpdir:
        for round_no in range(args.rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                port = pb.free_port()
                server = None
                try:
                    server = pb.start(uvicorn_argv(LOOPS[name], port), port, Path(tmpdir),
                                      name.replace(" ", "_"))
                    rows[name].append(pb.run_wrk(server.port, 1, args.duration, server))
                    print(f"round {round_no + 1} {name}: {rows[name][-1]['rps']:,.0f} req/s",
                          flush=True)
                except eb.RunFailed as exc:
                    print(f"{name}: {exc}", file=sys.stderr)
                finally:
                    if server is not None:
                        server.stop()
    ref = [r["rps"] for r in rows[REFERENCE]]
    print(f"\nuvicorn + raw ASGI hello, wrk -t1 -c100, no pipelining, median of {args.rounds}")
    print(f"{'loop':16} {'req/s':>10} {'×' + REFERENCE:>9} {'CPU µs/req':>11} {'wrk CPU':>8}")
    for name, results in rows.items():
        if not results:
            print(f"{name:16} failed")
            continue
        rps = statistics.median(r["rps"] for r in results)
        # Paired by round: each round's ratio to the reference's, then the median.
        ratios = [r["rps"] / ref[i] for i, r in enumerate(results) if i < len(ref)]
        print(f"{name:16} {rps:>10,.0f} {statistics.median(ratios):>8.2f}× "
              f"{statistics.median(r['cpu_us_per_req'] for r in results):>11.2f} "
              f"{statistics.median(r['client_cpu'] for r in results):>8.0%}")
    return 0 if all(rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
