"""TCP proxies side by side: echo traffic through each, to one upstream.

    python benchmarks/proxy_bench.py [echo_bench options]

The load generator of echo_bench.py drives each proxy, which relays every
connection to one C echo server (c_echo_server, started once for the run
and pinned with the load generator, so that the proxy is alone on its CPU).
Proxies: uringio's (``python -m uringio serve proxy``: splice through a
pipe, no byte in Python) on uring and on epoll, and the minimal asyncio
Protocol proxy (``servers/asyncio_proxy.py``) on uvloop and on asyncio's
loop. Ratios are msgs/s to the uvloop proxy, paired per round. Every
option of echo_bench.py applies (``--scenarios`` default 100x64,
``--rounds``, ``--duration``, ``--servers``, ...).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_bench as eb  # noqa: E402

PROXIES = ("uringio-uring", "uringio-epoll", "uvloop", "asyncio")


def register(upstream: str) -> list[str]:
    """Add a server per proxy, relaying to ``upstream`` (HOST:PORT); their names."""
    names = []
    for proxy in PROXIES:
        name = f"{proxy}.proxy"
        if proxy.startswith("uringio"):
            argv = (sys.executable, "-m", "uringio", "serve", "proxy", "--to", upstream,
                    "--backend", proxy.split("-")[1], "--host", eb.HOST, "--port", "0")
        else:
            argv = (sys.executable, str(eb.SERVERS_DIR / "asyncio_proxy.py"), "--loop", proxy,
                    "--to", upstream, "--host", eb.HOST, "--port", "0")
        eb.SERVERS[name] = eb.ServerSpec(name, argv, uses_uringio=proxy.startswith("uringio"))
        names.append(name)
    eb.REFERENCE = "uvloop.proxy"
    eb.PAIRS = [("uringio-uring.proxy", "uvloop.proxy"), ("uringio-epoll.proxy", "uvloop.proxy")]
    return names


def main(argv: list[str]) -> int:
    eb.build_tools()
    client_cpu = 0
    for i, arg in enumerate(argv[:-1]):
        if arg == "--client-cpu":
            client_cpu = int(argv[i + 1])
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
        return eb.main(argv)
    finally:
        upstream.stop()
        logdir.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
