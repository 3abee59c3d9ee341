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
from ..asgi.server import LIFESPAN_MODES, AppImportError
from ..errors import ListenError, UringUnavailable
from ..models import MODELS
from ..models.reload import ReloadUnavailable
from ..net.listeners import DEFAULT_BACKLOG
from ..net.tls import DEFAULT_CIPHERS, TLSConfigError, server_context
from . import logs

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


_BACKLOG = _checked(int, lambda n: n >= 1, "a backlog of 1 or more connections")
_CERT_REQS = _checked(int, lambda n: n in (0, 1, 2), "0, 1 or 2")
_FD = _checked(int, lambda n: n >= 0, "an open fd number")
_PERMS = _checked(lambda text: int(text, 8), lambda mode: 0 <= mode <= 0o777,
                  "an octal file mode, say 660")


def _access_log_format(text: str) -> str:
    """An argparse ``type``: a format of the access log's fields."""
    from ..asgi.http import check_access_log_format

    try:
        return check_access_log_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """Every option of ``parser`` may also come from the environment:
    ``--timeout-keep-alive 30`` is ``URINGIO_TIMEOUT_KEEP_ALIVE=30`` (a flag:
    1/true/yes/on or 0/false/no/off). The command line wins. A value the
    option would refuse is refused the same way, naming the variable."""
    for action in parser._actions:
        if action.default is argparse.SUPPRESS:
            continue   # --help, --version, and serve's copy of --log-level
        for option in action.option_strings:
            if not option.startswith("--"):
                continue
            name = "URINGIO_" + option[2:].replace("-", "_").upper()
            text = os.environ.get(name)
            if text is None:
                continue
            if isinstance(action, argparse._StoreTrueAction):
                if text.lower() not in _TRUE + _FALSE:
                    parser.error(f"{name}: expected 1 or 0 (true or false), got {text!r}")
                value: object = text.lower() in _TRUE
            else:
                try:
                    convert = action.type if callable(action.type) else str
                    value = convert(text)
                except argparse.ArgumentTypeError as exc:
                    parser.error(f"{name}: {exc}")
                if action.choices is not None and value not in action.choices:
                    parser.error(f"{name}: expected one of {', '.join(action.choices)}, "
                                 f"got {text!r}")
            parser.set_defaults(**{action.dest: value})


def _on_listening(args: argparse.Namespace):
    from ..net.listeners import describe

    suffix = "" if args.model == "single" else f", model={args.model}"

    def on_listening(server) -> None:
        print(f"listening on {describe(server.address)} (backend={server.backend}{suffix})",
              flush=True)
    return on_listening


def _serve_asgi(args: argparse.Namespace) -> int:
    from ..asgi import run

    _raise_fd_limit()
    return run(
        args.target, args.host, args.port, app_dir=args.app_dir, factory=args.factory,
        uds=args.uds, uds_perms=args.uds_perms, fd=args.fd, backlog=args.backlog,
        backend=args.backend, workers=1 if args.model == "single" else args.workers,
        lifespan=args.lifespan, on_listening=_on_listening(args),
        timeout_graceful_shutdown=args.drain_timeout,
        reuse_port=args.reuse_port, root_path=args.root_path,
        max_body=args.max_body or ASGI_MAX_BODY,
        header_timeout=args.header_timeout, keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        access_log=args.access_log_format or args.access_log,
        limit_max_requests=args.limit_max_requests,
        limit_max_requests_jitter=args.limit_max_requests_jitter,
        max_worker_rss=args.workers_max_rss << 20 if args.workers_max_rss else None,
        reload_dirs=[args.app_dir, *(args.reload_dir or ())] if args.reload else None,
        proxy_headers=args.proxy_headers, ws_max_message=args.ws_max_size,
        forwarded_allow_ips=args.forwarded_allow_ips,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        ssl_keyfile_password=args.ssl_keyfile_password, ssl_ca_certs=args.ssl_ca_certs,
        ssl_cert_reqs=args.ssl_cert_reqs, ssl_ciphers=args.ssl_ciphers,
        metrics_port=args.metrics_port, metrics_host=args.metrics_host)


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
    context = None
    if args.ssl_certfile is not None:
        context = server_context(args.ssl_certfile, args.ssl_keyfile, args.ssl_keyfile_password,
                                 args.ssl_ca_certs, args.ssl_cert_reqs, args.ssl_ciphers)
    _raise_fd_limit()
    return serve(factory, args.host, args.port, backend=args.backend, model=args.model,
                 workers=args.workers, threads=args.threads, on_listening=_on_listening(args),
                 drain_timeout=args.drain_timeout, idle_timeout=args.idle_timeout,
                 reuse_port=args.reuse_port, uds=args.uds, uds_perms=args.uds_perms,
                 fd=args.fd, backlog=args.backlog, ssl=context,
                 handshake_timeout=args.header_timeout)


def _raise_fd_limit() -> None:
    """A server wants as many fds as it may have: soft RLIMIT_NOFILE up to hard."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_script(relpath: str, argv: list[str]) -> int:
    module = runpy.run_path(_repo_file(*relpath.split("/")), run_name="uringio_bench")
    return module["main"](argv)


COMMANDS = {
    "serve": "run a server until SIGINT/SIGTERM (serve --help: its options)",
    "info": "what this machine offers io_uring",
    "bench": "the side-by-side echo benchmark (benchmarks/echo_bench.py)",
    "demo": "a short side-by-side run of uring vs epoll",
}
DEFAULT_PORT = 8888        # serve APP, but for asgi
DEFAULT_ASGI_PORT = 8000   # serve asgi: where every ASGI server listens


def _log_options(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """--log-level, --log-json and --log-config: on the top-level parser,
    and on serve's, where they default to nothing (argparse.SUPPRESS) so
    that the top level's stand unless given after ``serve`` too."""
    def default(value):
        return value if top_level else argparse.SUPPRESS

    parser.add_argument("--log-level", type=_LOG_LEVEL, default=default("INFO"),
                        help="logging level (default INFO)")
    parser.add_argument("--log-json", action="store_true", default=default(False),
                        help="log one JSON object per line (an access log line's fields "
                             "included)")
    parser.add_argument("--log-config", metavar="FILE", default=default(None),
                        help="configure logging from FILE instead: dictConfig from .json or "
                             ".yaml, fileConfig from .ini and others")


def _top_parser() -> _Parser:
    parser = _Parser(prog="python -m uringio",
                     usage="%(prog)s [-h] [--version] [--log-level LEVEL] COMMAND [ARGS...]",
                     description="TCP servers on io_uring, with an epoll reactor beside it.",
                     epilog="commands:\n" + "".join(f"  {name:8}{text}\n"
                                                    for name, text in COMMANDS.items()),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"uringio {__version__}")
    _log_options(parser, True)
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _serve_parser() -> _Parser:
    """``serve``'s options, in any order around APP and MODULE:APP."""
    serve = _Parser(prog="python -m uringio serve",
                    description="Run a server until SIGINT/SIGTERM. Every option can also be "
                                "set in the environment: --timeout-keep-alive 30 is "
                                "URINGIO_TIMEOUT_KEEP_ALIVE=30.")
    serve.add_argument("app", choices=APPS)
    serve.add_argument("target", nargs="?", metavar="MODULE:APP",
                       help="the ASGI app of serve asgi (say main:app)")
    serve.add_argument("--version", action="version", version=f"uringio {__version__}")
    _log_options(serve, False)
    serve.add_argument("--model", choices=MODELS, default=None,
                       help="single loop (default); pool: a loop plus worker threads for blocking "
                            "work; multi: worker processes (what --workers N asks for); "
                            "threads: a thread per connection")
    serve.add_argument("--threads", type=_THREADS, default=None, metavar="N",
                       help="worker threads of the pool model (default 4)")
    serve.add_argument("--workers", type=_WORKERS, default=None, metavar="N",
                       help="N worker processes: the multi model (0: one per CPU)")
    serve.add_argument("--work-ms", type=_MILLISECONDS, default=0, metavar="MS",
                       help="echo with MS milliseconds of blocking work per chunk (a sleep)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    where = serve.add_argument_group("where to listen")
    where.add_argument("--host", default="127.0.0.1")
    where.add_argument("--port", type=_PORT, default=None,
                       help=f"0 picks a free port (default {DEFAULT_ASGI_PORT} for asgi, "
                            f"{DEFAULT_PORT} for the others)")
    where.add_argument("--uds", metavar="PATH",
                       help="a Unix socket at PATH instead of --host/--port (a socket file "
                            "left there is replaced)")
    where.add_argument("--uds-perms", type=_PERMS, default=None, metavar="MODE",
                       help="the Unix socket's file mode, in octal (default: the umask's)")
    where.add_argument("--fd", type=_FD, default=None, metavar="N",
                       help="serve the socket inherited as fd N (bound, or listening). "
                            "Without --uds or --fd, the socket of systemd's socket "
                            "activation (LISTEN_FDS) when it hands one, else --host/--port")
    where.add_argument("--backlog", type=_BACKLOG, default=DEFAULT_BACKLOG, metavar="N",
                       help=f"connections the kernel queues before accepting (default "
                            f"{DEFAULT_BACKLOG})")
    http = serve.add_argument_group("http and asgi")
    http.add_argument("--static", type=_directory, metavar="DIR",
                      help="serve the files in DIR under /static/ (http)")
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
    asgi.add_argument("--factory", action="store_true",
                      help="MODULE:APP is a function of no arguments that returns the app")
    asgi.add_argument("--lifespan", choices=LIFESPAN_MODES, default="auto",
                      help="auto: run the app's lifespan if it speaks it (default); on: "
                           "require it; off: never")
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
    asgi.add_argument("--limit-max-requests", type=_THREADS, default=None, metavar="N",
                      help="a worker stops after N requests, and (with --workers) a fresh "
                           "one takes its place")
    asgi.add_argument("--limit-max-requests-jitter", type=_SIZE, default=0, metavar="N",
                      help="add a random 0 to N to each worker's --limit-max-requests, so "
                           "that they do not all restart at once")
    asgi.add_argument("--reload", action="store_true",
                      help="replace the workers when a Python file under --app-dir (and "
                           "--reload-dir) changes (needs watchfiles)")
    asgi.add_argument("--reload-dir", action="append", default=None, metavar="DIR",
                      help="also watch DIR (repeatable)")
    asgi.add_argument("--workers-max-rss", type=_THREADS, default=None, metavar="MIB",
                      help="with --workers: a worker whose resident memory passes MIB MiB "
                           "is replaced (a new one first, then it retires)")
    asgi.add_argument("--access-log", action="store_true",
                      help="log a line per request (logger uringio.asgi.access)")
    asgi.add_argument("--access-log-format", type=_access_log_format, default=None,
                      metavar="FORMAT", help="the access log's line, with {client} {method} "
                      "{path} {query} {http_version} {status} {bytes} {duration_ms} {pid} (implies "
                      "--access-log)")
    asgi.add_argument("--metrics-port", type=_PORT, default=None, metavar="PORT",
                      help="Prometheus text at http://METRICS-HOST:PORT/metrics: requests by "
                           "status, latency, connections, the engine's counters")
    asgi.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                      help="where the metrics endpoint listens (default 127.0.0.1)")
    tls = serve.add_argument_group("TLS (serve asgi, serve http)")
    tls.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate "
                     "(chain), PEM")
    tls.add_argument("--ssl-keyfile", metavar="FILE", help="its private key, PEM (default: in "
                     "the certfile)")
    tls.add_argument("--ssl-keyfile-password", metavar="PASSWORD", help="the key's password")
    tls.add_argument("--ssl-ca-certs", metavar="FILE", help="the CA certificates that sign "
                     "client certificates")
    tls.add_argument("--ssl-cert-reqs", type=_CERT_REQS, default=0, metavar="N",
                     help="client certificates: 0 not asked (default), 1 optional, 2 required")
    tls.add_argument("--ssl-ciphers", default=DEFAULT_CIPHERS, metavar="CIPHERS",
                     help=f"OpenSSL cipher string (default {DEFAULT_CIPHERS}, uvicorn's)")
    proxy = serve.add_argument_group("proxy")
    proxy.add_argument("--to", type=_host_port, metavar="HOST:PORT",
                       help="the address each connection is relayed to (required)")
    proxy.add_argument("--relay", choices=("copy", "splice"), default="copy",
                       help="copy: through the loop's buffers (default); splice: through a "
                            "pipe, never in user memory")
    serve.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="uring, epoll, or auto: io_uring where it works (default)")
    serve.add_argument("--idle-timeout", type=_SECONDS, default=None, metavar="S",
                       help="close connections whose peer sends and acknowledges nothing "
                            "for S seconds (a reset when that cuts an answer short)")
    serve.add_argument("--drain-timeout", "--timeout-graceful-shutdown", dest="drain_timeout",
                       type=_SECONDS, default=5.0, metavar="S",
                       help="on SIGINT/SIGTERM, let requests in flight and queued writes "
                            "finish this long (default 5)")
    _defaults_from_environment(serve)
    return serve


def _resolve_serve(serve: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks of options that do not go together, and the defaults
    that depend on others (the model on --workers, the port on the app)."""
    if args.port is None:
        args.port = DEFAULT_ASGI_PORT if args.app == "asgi" else DEFAULT_PORT
    if args.reload and args.workers is None:
        args.workers = 1   # a supervisor (it replaces the worker) over one worker
    if args.model is None:
        args.model = "multi" if args.workers not in (None, 1) or args.reload else "single"
    elif args.model != "multi" and args.workers not in (None, 1):
        serve.error(f"--workers {args.workers} runs worker processes: that is --model multi, "
                    f"not {args.model}")
    if args.workers is None:
        args.workers = 0   # multi's default: one per CPU
    if args.uds is not None and args.fd is not None:
        serve.error("listen on --uds PATH or on --fd N, not both")
    tls_options = (args.ssl_keyfile, args.ssl_keyfile_password, args.ssl_ca_certs)
    if args.ssl_certfile is None and (any(tls_options) or args.ssl_cert_reqs):
        serve.error("the --ssl-* options go with --ssl-certfile")
    if args.ssl_certfile is not None and args.app not in ("asgi", "http"):
        serve.error("TLS is served by serve asgi and serve http (--ssl-certfile)")
    if args.reload_dir and not args.reload:
        serve.error("--reload-dir goes with --reload")
    if args.reload and args.app != "asgi":
        serve.error("--reload goes with serve asgi")
    if args.workers_max_rss is not None and args.model != "multi":
        serve.error("--workers-max-rss replaces worker processes: it goes with --workers N")
    if args.uds_perms is not None and args.uds is None:
        serve.error("--uds-perms goes with --uds PATH")
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


def main(argv: list[str] | None = None) -> int:
    top = _top_parser()
    _defaults_from_environment(top)
    argv = sys.argv[1:] if argv is None else argv
    args = top.parse_args(argv)
    if args.command == "serve":
        serve = _serve_parser()
        serve_args = serve.parse_intermixed_args(args.args)
        for name in ("log_level", "log_json", "log_config"):
            setattr(args, name, getattr(serve_args, name, getattr(args, name)))
        _resolve_serve(serve, serve_args)
    try:
        logs.configure(args.log_level, args.log_config, args.log_json)
    except logs.LogConfigError as exc:
        top.exit(2, f"uringio: error: {exc}\n")
    if args.command in ("bench", "demo"):
        rest = args.args
        if args.command == "demo":
            rest = ["--demo", *rest]
        return _run_script("benchmarks/echo_bench.py", rest)
    if args.command == "serve":
        try:
            return _serve(serve_args)
        except (UringUnavailable, ListenError) as exc:
            # Where it runs, not a bug: the message names the cause and the fix.
            print(f"uringio: error: {exc.strerror}", file=sys.stderr)
            return 2
        except (AppImportError, ReloadUnavailable, TLSConfigError) as exc:
            print(f"uringio: error: {exc}", file=sys.stderr)
            return 2
    info = _Parser(prog="python -m uringio info", description=COMMANDS["info"])
    info.add_argument("--json", action="store_true")
    from . import info as info_mod
    return info_mod.main(info.parse_args(args.args).json)
