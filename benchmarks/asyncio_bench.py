"""asyncio's own echo servers on each event loop, side by side.

    python benchmarks/asyncio_bench.py [echo_bench options]

The same two server files -- an ``asyncio.Protocol`` and a streams
(``read``/``write``/``drain``) echo -- run on uringio's event loop (both
backends), uvloop, rloop and asyncio's own loop (``servers/loop_echo.py``),
under echo_bench.py's load generator, pinning and paired rounds; the ratios
are to uvloop running the Protocol server. Every option of echo_bench.py
applies (``--scenarios``, ``--rounds``, ``--duration``, ``--servers``, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_bench as eb  # noqa: E402

LOOPS = ("uringio-uring", "uringio-epoll", "uvloop", "rloop", "asyncio")
APIS = ("protocol", "streams")


def register() -> list[str]:
    """Add a server per loop and API to echo_bench's table; their names."""
    names = []
    for api in APIS:
        for loop in LOOPS:
            name = f"{loop}.{api}"
            eb.SERVERS[name] = eb.ServerSpec(
                name, (sys.executable, str(eb.SERVERS_DIR / "loop_echo.py"), "--loop", loop,
                       "--api", api, "--host", eb.HOST, "--port", "0"),
                uses_uringio=loop.startswith("uringio"))
            names.append(name)
    eb.REFERENCE = "uvloop.protocol"
    # Each API on uringio's loop against the same API on uvloop and rloop.
    eb.PAIRS = [(f"{ours}.{api}", f"{other}.{api}") for api in APIS
                for ours in LOOPS[:2] for other in ("uvloop", "rloop")]
    return names


def main(argv: list[str]) -> int:
    names = register()
    if not any(arg == "--servers" or arg.startswith("--servers=") for arg in argv):
        argv = ["--servers", ",".join(names), *argv]
    return eb.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
