"""``python -m uringio``: serve, info, bench and demo.

An error the user can fix (a bad argument, io_uring refused with
``--backend uring``, an address that cannot be bound) is one line on stderr,
naming the cause and the fix, and exit status 2. A traceback means a bug.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import runpy
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from .._core.backend import BACKENDS
from .._version import __version__
from ..asgi.server import AppImportError
from ..errors import ListenError, UringUnavailable
from ..models import MODELS

if TYPE_CHECKING:
    from ..net.connection import Protocol

HTTP_MAX_BODY = 1 << 20    # serve http: its handlers get the body whole
ASGI_MAX_BODY = 1 << 30    # serve asgi: apps stream it; still refuse what no app wants
APPS = ("echo", "whoami", "http", "resp", "proxy", "asgi")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, without the usage text above it:
    each of our messages names the fix, and ``--help`` has the rest."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _checked(convert: Callable[[str], object], ok: Callable,
             expected: str) -> Callable[[str], object]:
    """An argparse ``type``: ``convert(text)`` if ``ok`` accepts it, else an
    "expected ..., got ..." error."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


# NaN fails every comparison, so these refuse it; an infinite timeout is refused too.
_PORT = _checked(int, lambda n: 0 <= n <= 65535, "a port from 1 to 65535, or 0 for a free one")
_WORKERS = _checked(int, lambda n: n >= 0, "0 (one worker process per CPU) or more")
_THREADS = _checked(int, lambda n: n >= 1, "1 or more worker threads")
_BYTES = _checked(int, lambda n: n >= 1, "1 or more bytes")
_SIZE = _checked(int, lambda n: n >= 0, "0 or more bytes")
_SECONDS = _checked(float, lambda s: 0 < s < math.inf, "a number of seconds above 0")
_MILLISECONDS = _checked(float, lambda ms: 0 <= ms < math.inf, "0 or more milliseconds")


def _is_level_name(name: str) -> bool:
    return name in logging.getLevelNamesMapping()


_LOG_LEVEL = _checked(str.upper, _is_level_name, "DEBUG, INFO, WARNING or ERROR")


def _directory(path: str) -> str:
    """An argparse ``type``: ``path``, if it is a directory."""
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is not a directory; give the directory "
                                         "whose files to serve")
    return path


def _host_port(text: str) -> tuple[str, int]:
    """An argparse ``type``: HOST:PORT (an IPv6 host in brackets), resolvable."""
    import socket

    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot resolve {host!r}: {exc}") from None
    return host, int(port)


def _trusted_proxies(text: str) -> tuple[str, ...]:
    """An argparse ``type``: comma-separated addresses, networks or *."""
    from ..asgi.forwarded import TrustedProxies

    entries = tuple(entry.strip() for entry in text.split(","))
    try:
        TrustedProxies(entries)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--forwarded-allow-ips: ")) from None
    return entries


def _repo_file(*parts: str) -> str:
    """A file of the source checkout: the benchmarks are not in the wheel.

    Looked for beside the package (an editable install, or ``python -m``
    from the checkout) and then in the current directory (an installed
    uringio run from inside a checkout)."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (package_root, os.getcwd()):
        path = os.path.join(root, *parts)
        if os.path.exists(path):
            return path
    raise SystemExit(f"{os.path.join(*parts)} not found: the benchmarks come with the "
                     "source, not the wheel; run this from a uringio checkout")


def _on_listening(args: argparse.Namespace):
    suffix = "" if args.model == "single" else f", model={args.model}"

    def on_listening(server) -> None:
        host, port = server.address[:2]
        print(f"listening on {host}:{port} (backend={server.backend}{suffix})", flush=True)
    return on_listening


def _serve_asgi(args: argparse.Namespace) -> int:
    from ..asgi import serve_asgi
    from ..asgi.server import import_app

    app = import_app(args.target, args.app_dir)
    _raise_fd_limit()
    return serve_asgi(
        app, args.host, args.port, backend=args.backend,
        workers=1 if args.model == "single" else args.workers,
        on_listening=_on_listening(args), drain_timeout=args.drain_timeout,
        reuse_port=args.reuse_port, root_path=args.root_path,
        max_body=args.max_body or ASGI_MAX_BODY,
        header_timeout=args.header_timeout, keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency, access_log=args.access_log,
        proxy_headers=args.proxy_headers, ws_max_message=args.ws_max_size,
        forwarded_allow_ips=args.forwarded_allow_ips)


def _serve(args: argparse.Namespace) -> int:
    from ..models import serve
    from ..protocols.apps import APPS, blocking_echo

    if args.app == "asgi":
        return _serve_asgi(args)

    factory: Callable[[], Protocol]
    if args.app == "http":
        from ..protocols.http import default_router, http_factory
        factory = http_factory(default_router(args.static, args.static_read),
                               args.max_body or HTTP_MAX_BODY, args.header_timeout)
    elif args.app == "resp":
        from ..protocols.resp import RespProtocol
        factory = RespProtocol
    elif args.app == "proxy":
        from ..protocols.proxy import proxy_factory
        to_host, to_port = args.to
        factory = proxy_factory(to_host, to_port, relay=args.relay)
    else:
        factory = blocking_echo(args.work_ms) if args.work_ms else APPS[args.app]
    _raise_fd_limit()
    return serve(factory, args.host, args.port, backend=args.backend, model=args.model,
                 workers=args.workers, threads=args.threads, on_listening=_on_listening(args),
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
    parser = _Parser(prog="python -m uringio",
                     description="TCP servers on io_uring, with an epoll reactor beside it.")
    parser.add_argument("--version", action="version", version=f"uringio {__version__}")
    parser.add_argument("--log-level", type=_LOG_LEVEL, default="INFO",
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a server until SIGINT/SIGTERM")
    serve.add_argument("app", choices=APPS)
    serve.add_argument("target", nargs="?", metavar="MODULE:APP",
                       help="the ASGI app of serve asgi (say main:app)")
    serve.add_argument("--model", choices=MODELS, default="single",
                       help="single loop (default); pool: a loop plus worker threads for blocking "
                            "work; multi: worker processes on SO_REUSEPORT; threads: a thread "
                            "per connection")
    serve.add_argument("--threads", type=_THREADS, default=None, metavar="N",
                       help="worker threads of the pool model (default 4)")
    serve.add_argument("--workers", type=_WORKERS, default=0, metavar="N",
                       help="worker processes of the multi model (0: one per CPU)")
    serve.add_argument("--work-ms", type=_MILLISECONDS, default=0, metavar="MS",
                       help="echo with MS milliseconds of blocking work per chunk (a sleep)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    http = serve.add_argument_group("http")
    http.add_argument("--static", type=_directory, metavar="DIR",
                      help="serve the files in DIR under /static/")
    http.add_argument("--static-read", type=_SIZE, default=-1, metavar="BYTES",
                      help="static files up to BYTES are read and written, larger ones "
                           "spliced (default: 32 KiB on uring, 0 on epoll, where each is "
                           "faster)")
    http.add_argument("--max-body", type=_BYTES, default=None, metavar="BYTES",
                      help="larger request bodies get 413, refused before they are read "
                           "(default 1 MiB for http, 1 GiB for asgi)")
    http.add_argument("--header-timeout", type=_SECONDS, default=10.0, metavar="S",
                      help="a request head not complete after S seconds gets 408 (default 10)")
    asgi = serve.add_argument_group("asgi")
    asgi.add_argument("--app-dir", default=".", metavar="DIR",
                      help="where MODULE is looked for first (default: the current directory)")
    asgi.add_argument("--root-path", default="", metavar="PATH",
                      help="the ASGI root_path: where a proxy mounts the app")
    asgi.add_argument("--proxy-headers", action="store_true",
                      help="take client and scheme from X-Forwarded-For/-Proto, from the "
                           "addresses of --forwarded-allow-ips")
    asgi.add_argument("--forwarded-allow-ips", type=_trusted_proxies, default=("127.0.0.1",),
                      metavar="IPS", help="comma-separated addresses and networks "
                      "(10.0.0.0/8) trusted for proxy headers, or * (default 127.0.0.1)")
    asgi.add_argument("--limit-concurrency", type=_THREADS, default=None, metavar="N",
                      help="above N connections or requests at once, answer 503")
    asgi.add_argument("--timeout-keep-alive", type=_SECONDS, default=5.0, metavar="S",
                      help="close a keep-alive connection idle for S seconds (default 5)")
    asgi.add_argument("--ws-max-size", type=_BYTES, default=16 * 1024 * 1024, metavar="BYTES",
                      help="a WebSocket message over BYTES closes the connection with 1009 "
                           "(default 16 MiB)")
    asgi.add_argument("--access-log", action="store_true",
                      help="log a line per request (logger uringio.asgi.access)")
    proxy = serve.add_argument_group("proxy")
    proxy.add_argument("--to", type=_host_port, metavar="HOST:PORT",
                       help="the address each connection is relayed to (required)")
    proxy.add_argument("--relay", choices=("copy", "splice"), default="copy",
                       help="copy: through the loop's buffers (default); splice: through a "
                            "pipe, never in user memory")
    serve.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="uring, epoll, or auto: io_uring where it works (default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_PORT, default=8888, help="0 picks a free port")
    serve.add_argument("--idle-timeout", type=_SECONDS, default=None, metavar="S",
                       help="close connections whose peer sends and acknowledges nothing "
                            "for S seconds (a reset when that cuts an answer short)")
    serve.add_argument("--drain-timeout", type=_SECONDS, default=5.0, metavar="S",
                       help="on SIGINT/SIGTERM, let queued writes drain this long (default 5)")

    info = sub.add_parser("info", help="what this machine offers io_uring")
    info.add_argument("--json", action="store_true")

    sub.add_parser("bench", help="the side-by-side echo benchmark (benchmarks/echo_bench.py)",
                   add_help=False)
    sub.add_parser("demo", help="a short side-by-side run of uring vs epoll", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("bench", "demo"):
        if args.command == "demo":
            rest = ["--demo", *rest]
        return _run_script("benchmarks/echo_bench.py", rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "serve":
        if args.work_ms and args.app != "echo":
            serve.error("--work-ms goes with the echo app")
        if (args.to is not None) != (args.app == "proxy"):
            serve.error("the proxy app needs --to HOST:PORT, and only it takes one")
        if args.app == "proxy" and args.model == "threads":
            serve.error("the proxy relays on a loop: use --model single, pool or multi")
        if (args.target is not None) != (args.app == "asgi"):
            serve.error("serve asgi needs MODULE:APP (say main:app), and only it takes one")
        if args.app == "asgi" and args.model not in ("single", "multi"):
            serve.error("the ASGI server runs an asyncio loop per process: "
                        "use --model single or multi")
        try:
            return _serve(args)
        except (UringUnavailable, ListenError) as exc:
            # Where it runs, not a bug: the message names the cause and the fix.
            print(f"uringio: error: {exc.strerror}", file=sys.stderr)
            return 2
        except AppImportError as exc:
            print(f"uringio: error: {exc}", file=sys.stderr)
            return 2
    from . import info as info_mod
    return info_mod.main(args.json)
