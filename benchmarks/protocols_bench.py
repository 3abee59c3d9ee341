"""Real protocols side by side: HTTP under wrk, RESP under redis-benchmark.

    python benchmarks/protocols_bench.py [--rounds R] [--duration S] [--client wrk|loadgen]

HTTP: `python -m uringio serve http` (uring, epoll), a uvloop + httptools
server, the same minimal httptools protocol on uringio ("bare": the loops
compared alone, and what uringio's HTTP layer costs above it) and nginx with
one worker, all answering "/" with "Hello, World!".
wrk (one thread, 100 connections) drives each twice: with 16 requests
pipelined per connection (TechEmpower's plaintext method: without it, one
wrk thread saturates before a good Python server does) and without.
``--client loadgen`` drives them with loadgen.c's HTTP mode instead (the
same requests, 100 connections), which costs about two thirds of wrk's CPU
per request: without pipelining, wrk runs out of its core before uringio.
RESP: `python -m uringio serve resp` (uring, epoll) and redis-server (one
thread, persistence off) under `redis-benchmark -t get,set -P 16`.

Servers run pinned to CPU 1 and the clients to CPU 0; a fresh server per
run; paired rounds in rotated order; medians. nginx and redis-server come
from apt (installed here if missing, without starting their services),
bound to 127.0.0.1 and stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import echo_bench as eb  # noqa: E402

BENCH = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = 1, 0


def ensure_tools() -> None:
    """apt-get install what is missing, with service start-up disabled."""
    need = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx"),
                                  ("redis-server", "redis-server"),
                                  ("redis-benchmark", "redis-tools"))
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if not need:
        return
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:   # keep apt from starting nginx/redis as services
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        if not had_policy:
            policy.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((eb.HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise eb.RunFailed(f"exited with status {proc.returncode} before listening")
        try:
            socket.create_connection((eb.HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise eb.RunFailed("did not listen in time")


def nginx_argv(port: int, tmp: Path) -> list[str]:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp};
    server {{
        listen {eb.HOST}:{port} reuseport;
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
""")
    return ["nginx", "-c", str(conf), "-p", str(tmp)]


def python_server(*args: str) -> Callable[[int], list[str]]:
    """The argv of a Python server that picks its own port and prints it."""
    return lambda port: [sys.executable, *args, "--host", eb.HOST, "--port", "0"]


def http_servers(tmp: Path) -> dict:
    bare = str(BENCH / "servers" / "uringio_http_bare.py")
    return {
        "uring": python_server("-m", "uringio", "serve", "http", "--backend", "uring"),
        "epoll": python_server("-m", "uringio", "serve", "http", "--backend", "epoll"),
        "uvloop+httptools": python_server(str(BENCH / "servers" / "uvloop_http.py")),
        "bare uring": python_server(bare, "--backend", "uring"),
        "bare epoll": python_server(bare, "--backend", "epoll"),
        "nginx": lambda port: nginx_argv(port, tmp) + ["#{port}"],
    }


def resp_servers() -> dict:
    return {
        "uring": python_server("-m", "uringio", "serve", "resp", "--backend", "uring"),
        "epoll": python_server("-m", "uringio", "serve", "resp", "--backend", "epoll"),
        "redis-server": lambda port: ["redis-server", "--port", str(port), "--bind", eb.HOST,
                                      "--save", "", "--appendonly", "no", "--io-threads", "1",
                                      "--daemonize", "no", "#{port}"],
    }


def start(argv: list[str], port: int, logdir: Path, name: str) -> eb.Server:
    """A pinned server. ``argv`` ending in "#{port}" marks one that listens
    on ``port`` and prints no listening line; the others print one."""
    fixed = argv[-1] == "#{port}"
    server = eb.Server(eb.ServerSpec(name, tuple(argv[:-1] if fixed else argv)),
                       SERVER_CPU, logdir)
    try:
        if fixed:
            wait_port(port, server.proc)
            server.port = port
        else:
            server.port = server.wait_listening()
    except BaseException:
        server.stop()
        raise
    return server


def run_wrk(port: int, pipeline: int, duration: float, server: eb.Server,
            path: str = "/", conns: int = 100, timeout: int = 2, scheme: str = "http") -> dict:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
            f"--timeout={timeout}s"]
    if pipeline > 1:
        argv += ["-s", str(BENCH / "pipeline.lua")]
    argv += [f"{scheme}://{eb.HOST}:{port}{path}"]
    if pipeline > 1:
        argv += ["--", str(pipeline)]
    cpu0 = server.cpu_seconds()
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with eb.pinned(CLIENT_CPU):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30).stdout
    wall = time.monotonic() - start
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = server.cpu_seconds() - cpu0
    # wrk's own CPU: near 100 % means the client, not the server, sets the pace.
    client = (client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime) / wall
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    if total == 0:
        raise eb.RunFailed(f"no request completed in {duration} s (a longer --duration?)")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise eb.RunFailed(f"wrk reported errors: {errors.group(0)}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1, "ms": 1e3, "s": 1e6}
    return {"rps": rps, "cpu_us_per_req": cpu / total * 1e6, "client_cpu": client,
            "p99_us": float(p99.group(1)) * scale[p99.group(2)] if p99 else 0.0}


LOADGEN_CONNS, LOADGEN_WARMUP_S = 100, 1.0


def run_http_loadgen(port: int, pipeline: int, duration: float, server: eb.Server,
                     path: str = "/") -> dict:
    """What run_wrk measures, driven by loadgen.c's HTTP mode instead: 100
    connections, ``pipeline`` GETs per round, 1 s of warm-up, then
    ``duration`` s measured. It costs less CPU per request than wrk, so a
    server faster than one wrk thread can drive is measured by its own limit.

    The server's CPU is sampled at the window's edges (MEASURE_START/STOP)
    and divided by the responses counted in the window; ``client_cpu`` is
    loadgen's CPU share over that window; ``p99_us`` is a round's (all
    ``pipeline`` responses back), as wrk's latency is with pipelining."""
    argv = [str(eb.build_tools()), "--http", path, eb.HOST, str(port), str(LOADGEN_CONNS),
            str(pipeline), str(LOADGEN_WARMUP_S), str(duration)]
    try:
        got = eb.drive_loadgen(argv, LOADGEN_WARMUP_S + duration, CLIENT_CPU, server,
                               http=True)
    except eb.RunFailed as exc:
        # loadgen's first diagnostic says what was wrong (a status, a header).
        first = exc.detail.partition("\n")[0]
        raise eb.RunFailed(f"{exc.reason}: {first}" if first else exc.reason,
                           exc.detail) from None
    return {"rps": got["msgs_per_s"],
            "cpu_us_per_req": got["server_cpu_s"] / got["messages"] * 1e6,
            "client_cpu": got["client_cpu_s"] / got["seconds"],
            "p99_us": got["p99_us"]}


# The HTTP load generators, by --client name: the function that runs one
# (run_wrk's signature and result) and what a headline calls it.
HTTP_CLIENTS: dict[str, tuple[Callable[..., dict], str]] = {
    "wrk": (run_wrk, "wrk -t1 -c100"),
    "loadgen": (run_http_loadgen, "loadgen --http, 100 connections"),
}


def add_client_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", choices=tuple(HTTP_CLIENTS), default="wrk",
                        help="the HTTP load generator for every server: wrk -t1 -c100, or "
                             "loadgen.c's HTTP mode (cheaper per request, 100 connections)")


def http_client(name: str) -> tuple[Callable[..., dict], str]:
    """HTTP_CLIENTS[name], with loadgen built first: a build that fails
    (eb.BenchError) stops the run before any server starts."""
    if name == "loadgen":
        eb.build_tools()
    return HTTP_CLIENTS[name]


def run_redis_benchmark(port: int, requests: int) -> dict:
    argv = ["redis-benchmark", "-h", eb.HOST, "-p", str(port), "-t", "set,get",
            "-n", str(requests), "-P", "16", "-c", "50", "-q"]
    with eb.pinned(CLIENT_CPU):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = proc.stdout.replace("\r", "\n")
    if proc.returncode or "error" in out.lower():
        raise eb.RunFailed(f"redis-benchmark failed: {out[-300:]} {proc.stderr[-300:]}")
    rps = dict(re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M))
    return {"set_rps": float(rps["SET"]), "get_rps": float(rps["GET"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per HTTP run")
    add_client_option(parser)
    parser.add_argument("--requests", type=int, default=500_000, help="per redis-benchmark test")
    parser.add_argument("--out", type=Path, default=eb.DEFAULT_OUT)
    args = parser.parse_args(argv)
    console = Console(width=150)
    ensure_tools()
    try:
        measure, client = http_client(args.client)
    except eb.BenchError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        jobs = [("http", name, build) for name, build in http_servers(tmp).items()]
        jobs += [("resp", name, build) for name, build in resp_servers().items()]
        for round_no in range(args.rounds):
            shift = round_no % len(jobs)
            for kind, name, build in jobs[shift:] + jobs[:shift]:
                port = free_port()
                proc = None
                try:
                    proc = start(build(port), port, tmp, name.replace("+", "_"))
                    if kind == "http":
                        row = {f"p16_{k}": v for k, v in
                               measure(proc.port, 16, args.duration, proc).items()}
                        row.update({f"p1_{k}": v for k, v in
                                    measure(proc.port, 1, args.duration, proc).items()})
                    else:
                        row = run_redis_benchmark(proc.port, args.requests)
                    results.setdefault((kind, name), []).append(row)
                except (eb.RunFailed, subprocess.SubprocessError, AttributeError) as exc:
                    console.print(f"[red]{kind} {name}: {exc}[/red]")
                finally:
                    if proc is not None:
                        proc.stop()
    summary = {f"{k}/{n}": {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for (k, n), rows in results.items() if rows}
    http = Table(title=f"HTTP plaintext, {client}, median of {args.rounds}")
    for col in ("server", "pipelined x16 req/s", "×uvloop", "CPU µs/req", "client CPU",
                "no pipelining req/s", "CPU µs/req (no pipelining)", "×uvloop"):
        http.add_column(col, justify="right")
    base = summary.get("http/uvloop+httptools")
    for name in http_servers(Path("/tmp")):
        row = summary.get(f"http/{name}")
        if row is None:
            http.add_row(name, "failed", "", "", "", "", "", "")
            continue
        http.add_row(name, f"{row['p16_rps']:,.0f}",
                     f"{row['p16_rps'] / base['p16_rps']:.2f}×" if base else "",
                     f"{row['p16_cpu_us_per_req']:.2f}", f"{row['p16_client_cpu']:.0%}",
                     f"{row['p1_rps']:,.0f}", f"{row['p1_cpu_us_per_req']:.2f}",
                     f"{row['p1_rps'] / base['p1_rps']:.2f}×" if base else "")
    console.print(http)
    resp = Table(title=f"RESP, redis-benchmark -P 16 -c 50, median of {args.rounds}")
    for col in ("server", "SET req/s", "×redis", "GET req/s", "×redis"):
        resp.add_column(col, justify="right")
    rbase = summary.get("resp/redis-server")
    for name in resp_servers():
        row = summary.get(f"resp/{name}")
        if row is None:
            resp.add_row(name, "failed", "", "", "")
            continue
        resp.add_row(name, f"{row['set_rps']:,.0f}",
                     f"{row['set_rps'] / rbase['set_rps']:.2f}×" if rbase else "",
                     f"{row['get_rps']:,.0f}",
                     f"{row['get_rps'] / rbase['get_rps']:.2f}×" if rbase else "")
    console.print(resp)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"protocols_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    console.print(f"raw results: {path}")
    return 0 if len(summary) == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
