"""TCP proxies side by side: echo traffic through each, then a bulk transfer.

    python benchmarks/proxy_bench.py [--bulk-mib 1024] [--bulk-conns 1] [--bulk-rounds 3]
                                     [--no-echo] [echo_bench options]

Echo: the load generator of echo_bench.py drives each proxy, which relays
every connection to one C echo server (c_echo_server, started once for the
run and pinned with the load generator, so that the proxy is alone on its
CPU). Ratios are msgs/s to the uvloop proxy, paired per round; every option
of echo_bench.py applies (``--scenarios``, default 100x64, ``--rounds``,
``--duration``, ``--servers``, ...).

Bulk: --bulk-conns connections through each proxy carry --bulk-mib MiB
each from a client to a sink (threads of this harness, on the load
generator's CPU); --bulk-rounds
paired rounds, rotated; printed: MiB/s and the proxy's CPU seconds per
GiB, medians, and the paired ratios to the uvloop proxy and to the C
ceiling (``c_proxy.c``: the pumps' loop alone in C). --bulk-mib 0 skips
it, --no-echo skips the echo part.

Proxies: uringio's (``python -m uringio serve proxy``) on uring and on
epoll, each with ``--relay copy`` (the loop's receive and send paths) and
``--relay splice`` (through a pipe: no byte in user memory); and the
minimal asyncio Protocol proxy (``servers/asyncio_proxy.py``) on uvloop and
on asyncio's own loop.
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_bench as eb  # noqa: E402

PROXIES = ("uringio-uring", "uringio-uring-splice", "uringio-epoll", "uringio-epoll-splice",
           "uvloop", "asyncio", "c-proxy")
MiB = 1 << 20


def argv_of(proxy: str, upstream: str) -> tuple[str, ...]:
    if proxy == "c-proxy":   # the ceiling: c_proxy.c, the pumps' loop alone in C
        host, port = upstream.rsplit(":", 1)
        return (str(eb.BUILD_DIR / "c_proxy"), eb.HOST, "0", host, port)
    if proxy.startswith("uringio"):
        _, backend, *splice = proxy.split("-")
        return (sys.executable, "-m", "uringio", "serve", "proxy", "--to", upstream,
                "--backend", backend, "--relay", "splice" if splice else "copy",
                "--host", eb.HOST, "--port", "0")
    return (sys.executable, str(eb.SERVERS_DIR / "asyncio_proxy.py"), "--loop", proxy,
            "--to", upstream, "--host", eb.HOST, "--port", "0")


def register(upstream: str) -> list[str]:
    """Add a server per proxy, relaying to ``upstream`` (HOST:PORT); their names."""
    names = []
    for proxy in PROXIES:
        name = f"{proxy}.proxy"
        eb.SERVERS[name] = eb.ServerSpec(name, argv_of(proxy, upstream),
                                         uses_uringio=proxy.startswith("uringio"))
        names.append(name)
    eb.REFERENCE = "uvloop.proxy"
    eb.PAIRS = [(f"{p}.proxy", "uvloop.proxy") for p in PROXIES if p.startswith("uringio")]
    return names


def _drain(sink: socket.socket, received: list[int]) -> None:
    """Accept one connection and read it to its end, counting."""
    conn, _ = sink.accept()
    buf = bytearray(MiB)
    while n := conn.recv_into(buf):
        received[0] += n
    conn.close()


def _send(port: int, mib: int, block: memoryview) -> None:
    client = socket.create_connection((eb.HOST, port))
    for _ in range(mib):
        client.sendall(block)
    client.shutdown(socket.SHUT_WR)
    client.close()


def bulk_once(proxy: str, mib: int, conns: int, sink: socket.socket, server_cpu: int,
              logdir: Path) -> tuple[float, float]:
    """``conns`` connections through ``proxy``, ``mib`` MiB each, client ->
    proxy -> sink: (MiB/s, the proxy's CPU seconds per GiB)."""
    target = f"{eb.HOST}:{sink.getsockname()[1]}"
    block = memoryview(bytes(MiB))
    server = eb.Server(eb.ServerSpec(proxy, argv_of(proxy, target)), server_cpu, logdir)
    try:
        port = server.wait_listening()
        received = [[0] for _ in range(conns)]
        readers = [threading.Thread(target=_drain, args=(sink, got)) for got in received]
        for reader in readers:
            reader.start()
        senders = [threading.Thread(target=_send, args=(port, mib, block))
                   for _ in range(conns)]
        cpu0, start = server.cpu_seconds(), time.monotonic()
        for sender in senders:
            sender.start()
        for thread in senders + readers:
            thread.join(120)
        wall, cpu = time.monotonic() - start, server.cpu_seconds() - cpu0
    finally:
        server.stop()
    total = sum(got[0] for got in received)
    if total != conns * mib * MiB:
        raise eb.RunFailed(f"{proxy}: the sink received {total} B of {conns * mib * MiB}")
    return total / MiB / wall, cpu / (total / MiB / 1024)


def bulk(mib: int, conns: int, rounds: int, server_cpu: int, client_cpu: int,
         logdir: Path) -> None:
    """Per proxy, ``conns`` connections of ``mib`` MiB each, ``rounds`` paired
    rounds in rotated order; medians, and ratios to uvloop and to the C
    ceiling paired per round."""
    print(f"\nbulk: {conns} connection(s) x {mib} MiB, proxy on CPU {server_cpu}, "
          f"client and sink on CPU {client_cpu}, {rounds} rounds")
    runs: dict[str, list[tuple[float, float]]] = {p: [] for p in PROXIES}
    with eb.pinned(client_cpu):
        sink = socket.socket()
        sink.bind((eb.HOST, 0))
        sink.listen(64)
        try:
            for rnd in range(rounds):
                order = PROXIES[rnd % len(PROXIES):] + PROXIES[:rnd % len(PROXIES)]
                for proxy in order:
                    runs[proxy].append(bulk_once(proxy, mib, conns, sink, server_cpu, logdir))
        finally:
            sink.close()
    for proxy in PROXIES:
        rates = runs[proxy]
        paired = {ref: statistics.median(a[0] / b[0] for a, b in
                                         zip(rates, runs[ref], strict=True))
                  for ref in ("uvloop", "c-proxy")}
        print(f"  {proxy:22} {statistics.median(r[0] for r in rates):8,.0f} MiB/s   "
              f"{statistics.median(r[1] for r in rates):5.2f} CPU s/GiB   "
              f"x uvloop {paired['uvloop']:.2f}   x C ceiling {paired['c-proxy']:.2f}")


def _option(argv: list[str], name: str, default: int) -> tuple[int, list[str]]:
    # Ours, taken out of what goes to echo_bench; echo_bench's own, read.
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            value = int(argv[i + 1])
            ours = name.startswith("--bulk")
            return value, (argv[:i] + argv[i + 2:] if ours else argv)
    return default, argv


def main(argv: list[str]) -> int:
    eb.build_tools()
    bulk_mib, argv = _option(argv, "--bulk-mib", 1024)
    bulk_conns, argv = _option(argv, "--bulk-conns", 1)
    bulk_rounds, argv = _option(argv, "--bulk-rounds", 3)
    echo = "--no-echo" not in argv
    argv = [arg for arg in argv if arg != "--no-echo"]
    client_cpu, argv = _option(argv, "--client-cpu", 0)
    server_cpu, argv = _option(argv, "--server-cpu", 1)
    logdir = tempfile.TemporaryDirectory(prefix="proxy_bench.")
    with eb.pinned(client_cpu):
        upstream = eb.Server(eb.SERVERS["c-liburing"], None, Path(logdir.name))
    try:
        port = upstream.wait_listening()
        names = register(f"{eb.HOST}:{port}")
        if not any(arg == "--servers" or arg.startswith("--servers=") for arg in argv):
            argv = ["--servers", ",".join(names), *argv]
        if not any(arg == "--scenarios" or arg.startswith("--scenarios=") for arg in argv):
            argv = ["--scenarios", "100x64", *argv]
        status = eb.main(argv) if echo else 0
    finally:
        upstream.stop()
    if bulk_mib:
        bulk(bulk_mib, bulk_conns, bulk_rounds, server_cpu, client_cpu, Path(logdir.name))
    logdir.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
