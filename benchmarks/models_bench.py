"""The server models side by side: single, pool, multi and threads, on both
backends, with a cheap handler and with a blocking one.

    python benchmarks/models_bench.py [--rounds R] [--duration S] [--work-ms MS]

Built on echo_bench.py (its load generator, server handling and method:
a fresh server per run, paired rounds in rotated order, medians). Figures:

* cheap: 100 connections x 64 B echo; what each model costs per message.
* blocking: the same with MS ms of blocking work (a sleep) per message:
  single serialises it on the loop, pool and threads overlap it.
* threads at 1,000 connections: memory per connection and throughput,
  beside single on io_uring.
* multi scaling: 1 and 2 worker processes (unpinned, so the workers may use
  every CPU; on a 2-core machine the load generator shares them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import echo_bench as eb  # noqa: E402

CHEAP = eb.SCENARIOS["100x64"]
MANY = eb.SCENARIOS["1000x64"]


def spec(name: str, *serve_args: str) -> eb.ServerSpec:
    return eb.ServerSpec(name, (sys.executable, "-m", "uringio", "serve", "echo",
                                "--host", eb.HOST, "--port", "0", *serve_args), uses_uringio=True)


def configs(work_ms: float, threads: int) -> list[tuple[str, eb.Scenario, eb.ServerSpec, bool]]:
    """(group, scenario, server, pinned) for every run of a round."""
    runs = []
    for group, extra in (("cheap", ()), ("blocking", ("--work-ms", str(work_ms)))):
        for backend in ("uring", "epoll"):
            for model, margs in (("single", ()), ("pool", ("--threads", str(threads))),
                                 ("multi", ("--workers", "2"))):
                name = f"{model}-{backend}"
                runs.append((group, CHEAP, spec(name, "--backend", backend, "--model", model,
                                                *margs, *extra), model != "multi"))
        runs.append((group, CHEAP, spec("threads", "--model", "threads", *extra), True))
    runs.append(("1000 conns", MANY, spec("single-uring", "--backend", "uring"), True))
    runs.append(("1000 conns", MANY, spec("threads", "--model", "threads"), True))
    for workers in (1, 2):
        runs.append(("multi scaling", CHEAP, spec(f"multi-x{workers}-uring", "--backend", "uring",
                                                   "--model", "multi", "--workers", str(workers)),
                     False))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--work-ms", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=8, help="pool threads (default 8)")
    parser.add_argument("--out", type=Path, default=eb.DEFAULT_OUT)
    args = parser.parse_args(argv)
    console = Console()
    loadgen = eb.build_tools()
    runs = configs(args.work_ms, args.threads)
    results: dict[tuple[str, str], list[eb.RunResult]] = {}
    with tempfile.TemporaryDirectory() as logdir:
        pinned = eb.Options(args.warmup, args.duration, 1, 0, Path(logdir), loadgen)
        free = eb.Options(args.warmup, args.duration, None, 0, Path(logdir), loadgen)
        console.print(f"{len(runs) * args.rounds} runs of {args.warmup}+{args.duration} s")
        for round_no in range(args.rounds):
            order = runs[round_no % len(runs):] + runs[:round_no % len(runs)]
            for group, scenario, server, pin in order:
                res = eb.run_one(server, scenario, round_no, pinned if pin else free)
                if not res.ok:
                    console.print(f"[red]{group} {server.name}: {res.error}[/red]\n{res.detail}")
                results.setdefault((group, server.name), []).append(res)
    table = Table(title=f"Server models (median of {args.rounds} rounds; blocking = "
                        f"{args.work_ms:g} ms sleep per message, pool = {args.threads} threads)")
    for column in ("group", "server", "msgs/s", "p99 µs", "RSS MiB", "CPU µs/msg"):
        table.add_column(column, justify="left" if column in ("group", "server") else "right")
    summary = []
    for (group, name), rs in results.items():
        ok = [r for r in rs if r.ok]
        if not ok:
            table.add_row(group, name, "failed", "", "", "")
            continue
        row = {k: statistics.median(getattr(r, k) for r in ok)
               for k in ("msgs_per_s", "p99_us", "peak_rss_kib", "server_cpu_us_per_msg")}
        summary.append({"group": group, "server": name, **row, "runs": len(ok)})
        table.add_row(group, name, f"{row['msgs_per_s']:,.0f}", f"{row['p99_us']:,.0f}",
                      f"{row['peak_rss_kib'] / 1024:.1f}", f"{row['server_cpu_us_per_msg']:.2f}")
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"models_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"cpus": os.cpu_count(), "args": vars(args) | {"out": str(args.out)},
                                "results": summary}, indent=2))
    console.print(f"raw results: {path}")
    return 0 if all(r.ok for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
