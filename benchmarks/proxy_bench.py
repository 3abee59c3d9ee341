"""TCP proxies side by side: echo traffic through each, then a bulk transfer.

    python benchmarks/proxy_bench.py [--bulk-mib 1024] [echo_bench options]

Echo: the load generator of echo_bench.py drives each proxy, which relays
every connection to one C echo server (c_echo_server, started once for the
run and pinned with the load generator, so that the proxy is alone on its
CPU). Ratios are msgs/s to the uvloop proxy, paired per round; every option
of echo_bench.py applies (``--scenarios``, default 100x64, ``--rounds``,
``--duration``, ``--servers``, ...).

Bulk: one connection through each proxy carries --bulk-mib MiB from a
client to a sink (both threads of this harness, on the load generator's
CPU); printed: MiB/s and the proxy's CPU seconds per GiB (0 skips it).

Proxies: uringio's (``python -m uringio serve proxy``) on uring and on
epoll, each with ``--relay copy`` (the loop's receive and send paths) and
``--relay splice`` (through a pipe: no byte in user memory); and the
minimal asyncio Protocol proxy (``servers/asyncio_proxy.py``) on uvloop and
on asyncio's own loop.
"""

from __future__ import annotations

import socket
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


def bulk(mib: int, server_cpu: int, client_cpu: int, logdir: Path) -> None:
    """One connection, ``mib`` MiB client -> proxy -> sink, per proxy."""
    sink = socket.socket()
    sink.bind((eb.HOST, 0))
    sink.listen(8)
    target = f"{eb.HOST}:{sink.getsockname()[1]}"
    block = memoryview(bytes(MiB))
    print(f"\nbulk: {mib} MiB through one connection, proxy on CPU {server_cpu}")
    with eb.pinned(client_cpu):
        for proxy in PROXIES:
            server = eb.Server(eb.ServerSpec(proxy, argv_of(proxy, target)), server_cpu, logdir)
            try:
                port = server.wait_listening()
                received = [0]
                reader = threading.Thread(target=_drain, args=(sink, received))
                reader.start()
                client = socket.create_connection((eb.HOST, port))
                cpu0, start = server.cpu_seconds(), time.monotonic()
                for _ in range(mib):
                    client.sendall(block)
                client.shutdown(socket.SHUT_WR)
                reader.join(120)
                wall, cpu = time.monotonic() - start, server.cpu_seconds() - cpu0
                client.close()
                ok = "" if received[0] == mib * MiB else f"  (received {received[0]} B!)"
                print(f"  {proxy:22} {mib / wall:8,.0f} MiB/s   "
                      f"{cpu / (mib / 1024):6.2f} CPU s/GiB{ok}")
            finally:
                server.stop()
    sink.close()


def _option(argv: list[str], name: str, default: int) -> tuple[int, list[str]]:
    # Ours, taken out of what goes to echo_bench; echo_bench's own, read.
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            value = int(argv[i + 1])
            return value, (argv[:i] + argv[i + 2:] if name == "--bulk-mib" else argv)
    return default, argv


def main(argv: list[str]) -> int:
    eb.build_tools()
    bulk_mib, argv = _option(argv, "--bulk-mib", 1024)
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
        status = eb.main(argv)
    finally:
        upstream.stop()
    if bulk_mib:
        bulk(bulk_mib, server_cpu, client_cpu, Path(logdir.name))
    logdir.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
