"""ASGI servers side by side: the same apps on uringio, granian, uvicorn
and hypercorn.

    python benchmarks/asgi_bench.py [--apps raw,starlette,json,stream,mib]
                                    [--rounds 3] [--duration 4] [--pipeline 1]
                                    [--client wrk|loadgen]

Each app of ``servers/asgi_apps.py`` on each server, one worker each:
``python -m uringio serve asgi`` on uring and on epoll; granian (one
worker, one runtime thread); uvicorn (uvloop, httptools, no access log);
hypercorn (uvloop worker). And, as the frame the ratios are read in, the
minimal uvloop + httptools protocol answering "Hello, World!"
(``servers/uvloop_http.py``). wrk -t1 -c100 without pipelining (or
``--pipeline N`` requests per write), server on CPU 1 and the client on
CPU 0, a fresh server per run, rounds rotated; requests/s medians, and
uringio (uring)'s per-round ratios to granian and to uvicorn.

``--client loadgen`` drives every server of the run with loadgen.c's HTTP
mode instead of wrk (100 connections, the same requests, 1 s of warm-up
before the measured window): it costs less CPU per request, so a server
faster than one wrk thread can drive is measured by its own limit. The
default stays wrk, so figures are comparable with earlier runs; the
headline names the client.

``--tls``: every server serves HTTPS with the same self-signed RSA-2048
certificate (made with openssl for the run), and wrk speaks TLS to it
(its handshakes happen as its 100 connections open, before most of the
window); the ratios are then TLS against TLS. Each server's own plain
figure is the same command without ``--tls``.
"""

from __future__ import annotations

import argparse
import functools
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_bench as eb  # noqa: E402
import protocols_bench as pb  # noqa: E402

SERVERS_DIR = pb.BENCH / "servers"
APPS = {"raw": "raw", "json": "json_doc", "stream": "stream", "mib": "mib",
        "upload": "upload", "starlette": "starlette"}


def argv(server: str, app: str, port: int, tls: tuple[str, str] | None = None) -> list[str]:
    """``server``'s command line; ``tls``: (certificate, key) to serve HTTPS with."""
    target = f"asgi_apps:{APPS[app]}"
    cert, key = tls or ("", "")
    if server.startswith("uringio"):
        return [sys.executable, "-m", "uringio", "--log-level", "WARNING", "serve", "asgi",
                target, "--app-dir", str(SERVERS_DIR), "--backend", server.split()[1],
                "--host", eb.HOST, "--port", str(port),
                *(["--ssl-certfile", cert, "--ssl-keyfile", key] if tls else []), "#{port}"]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
                "--runtime-threads", "1", "--no-ws", "--log-level", "warning",
                "--host", eb.HOST, "--port", str(port), "--working-dir", str(SERVERS_DIR),
                *(["--ssl-certificate", cert, "--ssl-keyfile", key] if tls else []),
                target, "#{port}"]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, "--app-dir", str(SERVERS_DIR),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--host", eb.HOST, "--port", str(port),
                *(["--ssl-certfile", cert, "--ssl-keyfile", key] if tls else []), "#{port}"]
    if server == "hypercorn":
        # (hypercorn has no --app-dir; it takes a file path for the module)
        file_target = f"{SERVERS_DIR / 'asgi_apps.py'}:{APPS[app]}"
        return [sys.executable, "-m", "hypercorn", file_target, "--worker-class", "uvloop",
                "--workers", "1", "--log-level", "warning", "--bind", f"{eb.HOST}:{port}",
                *(["--certfile", cert, "--keyfile", key] if tls else []), "#{port}"]
    raise ValueError(server)


def self_signed(where: Path) -> tuple[str, str]:
    """A self-signed RSA-2048 certificate for 127.0.0.1 and its key, made
    with openssl in ``where``."""
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


SERVERS = ("uringio uring", "uringio epoll", "granian", "uvicorn", "hypercorn")
IDLE_SERVERS = ("uringio uring", "uringio epoll", "granian", "uvicorn")
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _rss_kib(server: eb.Server) -> int:
    total = 0
    for pid in server.pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _stable_rss_kib(server: eb.Server) -> int:
    # Two reads 0.2 s apart that agree (at most 5 s).
    last = _rss_kib(server)
    for _ in range(25):
        time.sleep(0.2)
        now = _rss_kib(server)
        if now == last:
            break
        last = now
    return last


def _one_request(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    got = b""
    while b"Hello, World!" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            raise eb.RunFailed("the server closed a keep-alive connection")
        got += chunk


def idle_memory(n: int, tmpdir: Path) -> None:
    """Memory per idle keep-alive connection: one request on each of ``n``
    connections, all kept open; the server's RSS growth over ``n``."""
    print(f"\nmemory per idle keep-alive connection ({n} connections, raw app, after one "
          "request each)")
    for server_name in IDLE_SERVERS:
        port = pb.free_port()
        command = argv(server_name, "raw", port)
        if server_name.startswith("uringio") or server_name == "uvicorn":
            command[-1:-1] = ["--timeout-keep-alive", "300"]
        server = pb.start(command, port, tmpdir, f"idle-{server_name}".replace(" ", "_"))
        socks: list[socket.socket] = []
        try:
            first = socket.create_connection((eb.HOST, server.port))
            _one_request(first)
            socks.append(first)
            base = _stable_rss_kib(server)
            for _ in range(n):
                sock = socket.create_connection((eb.HOST, server.port))
                _one_request(sock)
                socks.append(sock)
            grown = _stable_rss_kib(server)
            print(f"  {server_name:16} {(grown - base) * 1024 / n:8,.0f} B per connection "
                  f"(RSS {base / 1024:.1f} -> {grown / 1024:.1f} MiB)", flush=True)
        finally:
            for sock in socks:
                sock.close()
            server.stop()


def main(argv_: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default="raw,starlette,json,stream")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4,
                        help="seconds per run (loadgen: measured, after 1 s of warm-up)")
    parser.add_argument("--idle", type=int, default=2000, metavar="N",
                        help="keep-alive connections for the idle-memory figure (0: skip)")
    parser.add_argument("--pipeline", type=int, default=1, metavar="N",
                        help="requests per connection in flight (wrk with pipeline.lua); above "
                             "1 the client costs less per request, so a fast server, not "
                             "the client, sets the pace")
    pb.add_client_option(parser)
    parser.add_argument("--no-frame", action="store_true",
                        help="skip the minimal uvloop + httptools protocol")
    parser.add_argument("--tls", action="store_true",
                        help="HTTPS on every server, one self-signed RSA-2048 certificate "
                             "(wrk only; the frame is skipped)")
    args = parser.parse_args(argv_)
    if args.tls and args.client != "wrk":
        parser.error("--tls goes with --client wrk")
    pb.ensure_tools()
    try:
        measure, client = pb.http_client(args.client)
    except eb.BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    apps = args.apps.split(",")
    servers = args.servers.split(",")
    runs = [(s, a) for a in apps for s in servers]
    if not args.no_frame and not args.tls:
        runs.append(("uvloop+httptools", "raw"))
    if args.tls:
        measure = functools.partial(pb.run_wrk, scheme="https")
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tls = self_signed(Path(tmpdir)) if args.tls else None
        for round_no in range(args.rounds):
            shift = round_no % len(runs)
            for server_name, app in runs[shift:] + runs[:shift]:
                port = pb.free_port()
                if server_name == "uvloop+httptools":
                    command = pb.python_server(str(SERVERS_DIR / "uvloop_http.py"))(port)
                else:
                    command = argv(server_name, app, port, tls)
                server = None
                try:
                    server = pb.start(command, port, Path(tmpdir),
                                      f"{server_name}-{app}".replace(" ", "_"))
                    got = measure(server.port, args.pipeline, args.duration, server)
                except eb.RunFailed as exc:
                    print(f"{server_name} {app}: {exc}", file=sys.stderr)
                    continue
                finally:
                    if server is not None:
                        server.stop()
                results.setdefault((server_name, app), []).append(got["rps"])
                cpu.setdefault((server_name, app), []).append(got["cpu_us_per_req"])
                print(f"round {round_no + 1} {app:9} {server_name:16} {got['rps']:>10,.0f} req/s "
                      f"{got['cpu_us_per_req']:6.1f} µs/req  "
                      f"{args.client} CPU {got['client_cpu']:.0%}",
                      flush=True)
    frame = results.get(("uvloop+httptools", "raw"))
    pipelining = f"{args.pipeline} pipelined" if args.pipeline > 1 else "no pipelining"
    over = ", over TLS (RSA-2048, self-signed)" if args.tls else ""
    print(f"\nASGI servers, {client}{over}, {pipelining}, medians of {args.rounds} rounds")
    for app in apps:
        print(f"\n{app}:")
        ours = results.get(("uringio uring", app), [])
        for server_name in servers:
            rates = results.get((server_name, app))
            if not rates:
                print(f"  {server_name:16} failed")
                continue
            line = (f"  {server_name:16} {statistics.median(rates):>10,.0f} req/s "
                    f"{statistics.median(cpu[(server_name, app)]):6.1f} µs/req")
            if frame:
                line += f"  {statistics.median(rates) / statistics.median(frame):.2f}× frame"
            if ours and server_name != "uringio uring":
                pairs = [a / b for a, b in zip(ours, rates, strict=False)]
                line += f"  uring/this {statistics.median(pairs):.2f}×"
            print(line)
    if frame:
        print(f"\nframe: uvloop+httptools minimal protocol {statistics.median(frame):,.0f} req/s")
    if args.idle:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        with tempfile.TemporaryDirectory() as tmpdir:
            idle_memory(args.idle, Path(tmpdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
