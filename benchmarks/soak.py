"""A soak: mixed traffic against uringio's servers for a long time, watching
whether they keep what they should let go.

    python benchmarks/soak.py --minutes 30            the long run (docs/testing.md)
    python benchmarks/soak.py --minutes 2             CI's short form

Four servers run on one backend (``--backend``, uring by default): ``serve
asgi`` (HTTP keep-alive, pipelined, uploads, WebSockets), ``serve http``
(keep-alive, pipelined), ``serve resp`` (SET/GET), and ``serve proxy`` in
front of ``serve http``. Client threads keep each busy, check every answer
byte for byte, and open a fresh connection every few hundred requests, so
connection set-up and tear-down run all along too.

Every few seconds each server's RSS (VmRSS) and open fds are sampled. After
the warm-up (a fifth of the run, at least 20 s: pools, caches and the
allocator's arenas reach their size), the run passes when, for every server:

* no client saw an error or a wrong answer;
* its fds stay within ``FD_SLACK`` of where they were (connections come and
  go, so a few may be open at a sample);
* its RSS grows less than ``--mib-per-10min`` (1 MiB by default) per ten
  minutes, by a least-squares line through the samples. Over a short run
  that line is noisy (a page or two is a lot of a small window), so the
  short form also allows ``SHORT_RUN_SLACK_MIB`` of total growth.

Not a speed figure: the clients are Python threads sharing two cores with
the servers. Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HOST = "127.0.0.1"
SAMPLE_S = 5.0
FD_SLACK = 16               # connections in flight at a sample, each one fd
SHORT_RUN_SLACK_MIB = 2.0   # a short run's allowance for noise in its RSS line
RECONNECT_EVERY = 300       # requests on one connection before a fresh one


@dataclass
class Server:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    port: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss KiB, fds)

    def start(self, backend: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uringio", "serve", *self.argv, "--port", "0",
             "--backend", backend], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()   # "listening on 127.0.0.1:PORT (backend=...)"
        if "listening on" not in line:
            raise SystemExit(f"soak: {self.name} did not start: {line!r}")
        self.port = int(line.split(":")[1].split()[0])

    def sample(self, t: float) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        self.samples.append((t, rss, len(os.listdir(f"/proc/{pid}/fd"))))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- clients: each a loop over one kind of exchange, checking every byte --------------

class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: dict[str, int] = {}
        self.errors: list[str] = []

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.done[kind] = self.done.get(kind, 0) + n

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors.append(f"{kind}: {what}")


@dataclass
class Conn:
    """A client's connection: its socket, what it received and has not read
    yet, and (WebSocket) whether it is upgraded."""
    sock: socket.socket
    have: bytearray = field(default_factory=bytearray)
    upgraded: bool = False


def _recv_until(sock: socket.socket, marker: bytes, have: bytearray) -> bytes:
    while marker not in have:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-answer")
        have += chunk
    head, _, rest = bytes(have).partition(marker)
    have[:] = rest
    return head


def _http_responses(sock: socket.socket, count: int, have: bytearray) -> list[bytes]:
    """``count`` responses with Content-Length bodies: their bodies."""
    bodies = []
    for _ in range(count):
        head = _recv_until(sock, b"\r\n\r\n", have)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ValueError(f"answer {head[:40]!r}")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(have) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            have += chunk
        bodies.append(bytes(have[:length]))
        del have[:length]
    return bodies


def http_client(port: int, expect: bytes, pipeline: int, upload: bool):
    """Keep-alive GETs (``pipeline`` at a time) and, with ``upload``, POSTs
    whose body must come back."""
    def exchange(conn: Conn, rng: random.Random) -> int:
        sock, have = conn.sock, conn.have
        if upload and rng.random() < 0.3:
            body = rng.randbytes(rng.choice((10, 3000, 70000)))
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            if _http_responses(sock, 1, have) != [body]:
                raise ValueError("the body came back changed")
            return 1
        sock.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n" * pipeline)
        bodies = _http_responses(sock, pipeline, have)
        if any(b != expect for b in bodies):
            raise ValueError(f"answer body {bodies[0][:40]!r}")
        return pipeline
    return exchange


def resp_client():
    def exchange(conn: Conn, rng: random.Random) -> int:
        sock, have = conn.sock, conn.have
        key, value = b"k%d" % rng.randrange(1000), rng.randbytes(rng.randrange(1, 200))
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"
                     % (len(key), key, len(value), value, len(key), key))
        if _recv_until(sock, b"\r\n", have) != b"+OK":
            raise ValueError("SET not OK")
        if _recv_until(sock, b"\r\n", have) != b"$%d" % len(value):
            raise ValueError("GET length")
        while len(have) < len(value) + 2:
            have += sock.recv(65536)
        if bytes(have[:len(value)]) != value:
            raise ValueError("GET value")
        del have[:len(value) + 2]
        return 2
    return exchange


def _read_frame(conn: Conn) -> bytes:
    """One (unmasked) frame from the server: its payload."""
    have = conn.have

    def need(n: int) -> None:
        while len(have) < n:
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-frame")
            have.extend(chunk)

    need(2)
    n, start = have[1] & 0x7F, 2
    if n == 126:
        need(4)
        n, start = struct.unpack("!H", bytes(have[2:4]))[0], 4
    elif n == 127:
        need(10)
        n, start = struct.unpack("!Q", bytes(have[2:10]))[0], 10
    need(start + n)
    payload = bytes(have[start:start + n])
    del have[:start + n]
    return payload


def websocket_client():
    """A WebSocket echo: handshake on each fresh connection, masked frames
    of several sizes, the echo checked, a close at the end."""
    def frame(payload: bytes, rng: random.Random, opcode: int = 2) -> bytes:
        mask = rng.randbytes(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                          struct.pack("!BH", 0x80 | 126, n))
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def exchange(conn: Conn, rng: random.Random) -> int:
        sock, have = conn.sock, conn.have
        if not conn.upgraded:
            key = base64.b64encode(rng.randbytes(16))
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: %s\r\n\r\n" % key)
            if not _recv_until(sock, b"\r\n\r\n", have).startswith(b"HTTP/1.1 101"):
                raise ValueError("no 101")
            conn.upgraded = True
        payload = rng.randbytes(rng.choice((1, 100, 5000, 60000)))
        sock.sendall(frame(payload, rng))
        if _read_frame(conn) != payload:
            raise ValueError("the echo differs")
        return 1
    return exchange


def client_loop(name: str, port: int, exchange, tally: Tally, stop: threading.Event,
                seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, port), timeout=30) as sock:
                conn = Conn(sock)
                for _ in range(RECONNECT_EVERY):
                    if stop.is_set():
                        break
                    tally.count(name, exchange(conn, rng))
        except (OSError, ValueError, StopIteration) as exc:
            if not stop.is_set():
                tally.error(name, repr(exc))
                time.sleep(0.5)   # an error is counted once, not in a tight loop


# -- the run ------------------------------------------------------------------------------

def growth_mib_per_10min(samples: list[tuple[float, int, int]]) -> float:
    """The slope of RSS over time, by least squares, in MiB per 10 minutes."""
    ts = [t for t, _, _ in samples]
    rss = [kib / 1024 for _, kib, _ in samples]
    if len(samples) < 3 or max(ts) == min(ts):
        return 0.0
    slope = statistics.linear_regression(ts, rss).slope   # MiB per second
    return slope * 600


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--backend", default="uring", choices=("uring", "epoll"))
    p.add_argument("--mib-per-10min", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    app_dir = str(BENCH_DIR / "servers")
    http = Server("serve http", ["http"])
    servers = [Server("serve asgi", ["asgi", "soak_app:app", "--app-dir", app_dir]),
               http, Server("serve resp", ["resp"])]
    tally, stop = Tally(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        for server in servers:
            server.start(args.backend)
        proxy = Server("serve proxy", ["proxy", "--to", f"{HOST}:{http.port}"])
        proxy.start(args.backend)
        servers.append(proxy)
        asgi, _, resp, _ = servers
        plans = [
            ("asgi keep-alive", asgi.port, http_client(asgi.port, b"Hello, World!", 1, True)),
            ("asgi pipelined", asgi.port, http_client(asgi.port, b"Hello, World!", 16, False)),
            ("asgi websocket", asgi.port, websocket_client()),
            ("http keep-alive", http.port, http_client(http.port, b"Hello, World!", 1, False)),
            ("http pipelined", http.port, http_client(http.port, b"Hello, World!", 16, False)),
            ("resp", resp.port, resp_client()),
            ("proxy", proxy.port, http_client(proxy.port, b"Hello, World!", 4, False)),
        ]
        for i, (name, port, exchange) in enumerate(plans):
            thread = threading.Thread(target=client_loop, daemon=True,
                                      args=(name, port, exchange, tally, stop, args.seed + i))
            thread.start()
            threads.append(thread)
        duration = args.minutes * 60
        warmup = max(20.0, duration / 5)
        print(f"soak: {args.minutes:g} min on {args.backend}, warm-up {warmup:.0f} s, "
              f"a sample every {SAMPLE_S:g} s", flush=True)
        start = time.monotonic()
        while (now := time.monotonic() - start) < duration:
            time.sleep(min(SAMPLE_S, duration - now))
            t = time.monotonic() - start
            for server in servers:
                if server.proc is not None and server.proc.poll() is not None:
                    tally.error(server.name, f"exited with {server.proc.returncode}")
                    stop.set()
                elif t >= warmup:
                    server.sample(t)
            if stop.is_set():
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
        for server in servers:
            server.stop()

    failed = bool(tally.errors)
    short = args.minutes < 10
    print(f"\n{'server':<12} {'RSS MiB (first..last)':>22} {'MiB/10min':>10} {'fds':>9}  verdict")
    for server in servers:
        if not server.samples:
            print(f"{server.name:<12} no samples after the warm-up")
            failed = True
            continue
        rss = [kib / 1024 for _, kib, _ in server.samples]
        fds = [n for _, _, n in server.samples]
        slope = growth_mib_per_10min(server.samples)
        rss_ok = slope < args.mib_per_10min or (short and rss[-1] - rss[0] < SHORT_RUN_SLACK_MIB)
        fds_ok = max(fds) - min(fds) <= FD_SLACK
        failed |= not (rss_ok and fds_ok)
        print(f"{server.name:<12} {rss[0]:>10.1f}..{rss[-1]:<10.1f} {slope:>10.2f} "
              f"{min(fds):>4}-{max(fds):<4}  {'ok' if rss_ok and fds_ok else 'FAILED'}")
    print("\nexchanges: " + ", ".join(f"{k} {v:,}" for k, v in sorted(tally.done.items())))
    print(f"errors: {len(tally.errors)}")
    for error in tally.errors[:20]:
        print(f"  {error}")
    if not all(tally.done.get(name, 0) for name, _, _ in plans):
        print("some client made no exchange at all")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
