"""``python -m uringio``: serve, info, bench and demo."""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys

from .loop import BACKENDS
from .models import MODELS

APPS = ("echo", "whoami", "http", "resp")


def _repo_file(*parts: str) -> str:
    """A file of the source checkout (benchmarks are not installed)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, *parts)
    if not os.path.exists(path):
        raise SystemExit(f"{os.path.join(*parts)} not found: run this from a uringio source checkout")
    return path


def _serve(args: argparse.Namespace) -> int:
    from .apps import APPS, blocking_echo
    from .models import serve

    if args.work_ms and args.app != "echo":
        raise SystemExit("--work-ms goes with the echo app")
    if args.app == "http":
        from .http import default_router, http_factory
        factory = http_factory(default_router(args.static), args.max_body, args.header_timeout)
    elif args.app == "resp":
        from .resp import RespProtocol
        factory = RespProtocol
    else:
        factory = blocking_echo(args.work_ms) if args.work_ms else APPS[args.app]
    suffix = "" if args.model == "single" else f", model={args.model}"

    def on_listening(server) -> None:
        host, port = server.address[:2]
        print(f"listening on {host}:{port} (backend={server.backend}{suffix})", flush=True)

    _raise_fd_limit()
    return serve(factory, args.host, args.port, backend=args.backend, model=args.model,
                 workers=args.workers, threads=args.threads, on_listening=on_listening,
                 drain_timeout=args.drain_timeout, idle_timeout=args.idle_timeout,
                 reuse_port=args.reuse_port)


def _raise_fd_limit() -> None:
    """A server wants as many fds as it may have: soft RLIMIT_NOFILE up to hard."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_script(relpath: str, argv: list[str]) -> int:
    module = runpy.run_path(_repo_file(*relpath.split("/")), run_name="uringio_bench")
    return module["main"](argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uringio",
                                     description="TCP servers on io_uring, with an epoll reactor beside it.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a server until SIGINT/SIGTERM")
    serve.add_argument("app", choices=APPS)
    serve.add_argument("--model", choices=MODELS, default="single",
                       help="single loop (default); pool: a loop plus worker threads for blocking "
                            "work; multi: worker processes on SO_REUSEPORT; threads: a thread "
                            "per connection")
    serve.add_argument("--threads", type=int, default=None, metavar="N",
                       help="worker threads of the pool model (default 4)")
    serve.add_argument("--workers", type=int, default=0, metavar="N",
                       help="worker processes of the multi model (0: one per CPU)")
    serve.add_argument("--work-ms", type=float, default=0, metavar="MS",
                       help="echo with MS milliseconds of blocking work per chunk (a sleep)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    http = serve.add_argument_group("http")
    http.add_argument("--static", metavar="DIR", help="serve the files in DIR under /static/")
    http.add_argument("--max-body", type=int, default=1024 * 1024, metavar="BYTES",
                      help="larger request bodies get 413 (default 1 MiB)")
    http.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                      help="a request head not complete after S seconds gets 408 (default 10)")
    serve.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="uring, epoll, or auto: io_uring where it works (default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8888, help="0 picks a free port")
    serve.add_argument("--idle-timeout", type=float, default=None, metavar="S",
                       help="close connections idle for S seconds: nothing received and none of our bytes sent")
    serve.add_argument("--drain-timeout", type=float, default=5.0, metavar="S",
                       help="on SIGINT/SIGTERM, let queued writes drain this long (default 5)")

    info = sub.add_parser("info", help="what this machine offers io_uring")
    info.add_argument("--json", action="store_true")

    sub.add_parser("bench", help="the side-by-side echo benchmark (benchmarks/echo_bench.py)",
                   add_help=False)
    sub.add_parser("demo", help="a short side-by-side run of uring vs epoll", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("bench", "demo"):
        if args.command == "demo":
            rest = ["--demo", *rest]
        return _run_script("benchmarks/echo_bench.py", rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "serve":
        return _serve(args)
    from . import info as info_mod
    return info_mod.main(args.json)
