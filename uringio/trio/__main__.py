"""``python -m uringio.trio [--backend uring|epoll|auto] SCRIPT [ARGS...]``:
run a trio program, unmodified, with every ``trio.run`` it makes on
uringio's IO manager (as ``python SCRIPT ARGS...`` would run it
otherwise)."""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from .._core.backend import BACKENDS
from . import check_trio_version, installed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m uringio.trio", description=__doc__.split(
        "\n\n")[0].split(":", 1)[1].strip())
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="uring, epoll, or auto: io_uring where it works (default)")
    parser.add_argument("script", help="the program's file")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    check_trio_version()
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    with installed(args.backend, every_run=True):
        runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
