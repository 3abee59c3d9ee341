"""``serve asgi`` run with uvicorn's habits: options in any order around
MODULE:APP (``--log-level`` after ``serve`` too), ``--workers N`` without
``--model``, port 8000 by default, ``--factory``, ``--lifespan``,
``--backlog``, ``--timeout-graceful-shutdown``, ``--limit-max-requests``,
and every option from a ``URINGIO_`` environment variable. Each server on
both backends, stopped by its pid."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, recv_until_eof, status_of, stop_server, wait_for
from uringio.cli import DEFAULT_ASGI_PORT, DEFAULT_PORT, _resolve_serve, _serve_parser

APPS = os.path.join(REPO, "tests", "apps")
TIMEOUT = 10.0


def start(argv: list[str], backend: str, env: dict | None = None):
    """``python -m uringio ARGV``, its backend from ``URINGIO_BACKEND`` (the
    environment is one of the things tested here); returns (process, port,
    listening line)."""
    proc = subprocess.Popen([sys.executable, "-m", "uringio", *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "URINGIO_BACKEND": backend, **(env or {})})
    line = proc.stdout.readline()
    match = re.match(rf"listening on 127\.0\.0\.1:(\d+) \(backend={backend}", line)
    if not match:
        proc.kill()
        proc.wait()
        raise AssertionError(f"no listening line: {line!r} {proc.stderr.read()}")
    return proc, int(match.group(1)), line


def get(port: int, path: str = "/scope") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = recv_until_eof(sock)
    return status_of(answer), answer.partition(b"\r\n\r\n")[2]


def scope_of(port: int) -> dict:
    status, body = get(port)
    assert status == 200, body
    return json.loads(body)


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["serve", "asgi", "--port", "0", "operate_app:app", "--app-dir", APPS],
    ["serve", "--port", "0", "asgi", "--app-dir", APPS, "operate_app:app"],
    ["serve", "asgi", "operate_app:app", "--log-level", "warning", "--port", "0",
     "--app-dir", APPS],
], ids=["app-after-port", "app-last", "log-level-after-serve"])
def test_options_in_any_order(backend, argv):
    proc, port, _ = start(argv, backend)
    try:
        scope = scope_of(port)
        assert scope["state"]["started_by"] > 0 and scope["scheme"] == "http"
    finally:
        assert stop_server(proc) == 0
    if "--log-level" in argv:   # WARNING: the INFO lines are gone
        assert "INFO" not in proc.stderr.read()


def parse(argv: list[str]):
    parser = _serve_parser()
    args = parser.parse_intermixed_args(argv)
    _resolve_serve(parser, args)
    return args


def test_serve_asgi_listens_on_8000_by_default_and_the_others_on_8888():
    assert parse(["asgi", "main:app"]).port == DEFAULT_ASGI_PORT == 8000
    assert parse(["echo"]).port == DEFAULT_PORT == 8888
    assert parse(["asgi", "main:app", "--port", "0"]).port == 0


def test_workers_without_model_is_the_multi_model(backend):
    proc, port, line = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                              "--port", "0", "--workers", "2"], backend)
    try:
        assert line.rstrip().endswith("model=multi)"), line
        assert len(children(proc.pid)) == 2
        assert scope_of(port)["pid"] in children(proc.pid)
    finally:
        assert stop_server(proc) == 0
    assert parse(["asgi", "m:a", "--workers", "1"]).model == "single"
    assert parse(["asgi", "m:a"]).model == "single"


def test_uringio_environment_sets_options(backend):
    # URINGIO_WORKERS, URINGIO_PORT, URINGIO_APP_DIR, URINGIO_ACCESS_LOG and
    # URINGIO_LOG_LEVEL (a top-level option), as a container sets them.
    env = {"URINGIO_WORKERS": "2", "URINGIO_PORT": "0", "URINGIO_APP_DIR": APPS,
           "URINGIO_ACCESS_LOG": "true", "URINGIO_LOG_LEVEL": "info"}
    proc, port, line = start(["serve", "asgi", "operate_app:app"], backend, env)
    try:
        assert line.rstrip().endswith("model=multi)"), line
        assert len(children(proc.pid)) == 2
        assert get(port, "/scope?x")[0] == 200
    finally:
        assert stop_server(proc) == 0
    assert '"GET /scope HTTP/1.1" 200' in proc.stderr.read()   # the access log


def test_the_command_line_beats_the_environment(backend, monkeypatch):
    monkeypatch.setenv("URINGIO_WORKERS", "3")
    monkeypatch.setenv("URINGIO_TIMEOUT_KEEP_ALIVE", "30")
    args = parse(["asgi", "m:a", "--workers", "1"])
    assert (args.workers, args.model, args.timeout_keep_alive) == (1, "single", 30.0)
    monkeypatch.setenv("URINGIO_PROXY_HEADERS", "0")
    assert parse(["asgi", "m:a"]).proxy_headers is False
    assert parse(["asgi", "m:a", "--proxy-headers"]).proxy_headers is True


@pytest.mark.parametrize("name, value, message", [
    ("URINGIO_WORKERS", "many", "URINGIO_WORKERS: expected 0 (one worker process per CPU) "
                                "or more, got 'many'"),
    ("URINGIO_ACCESS_LOG", "maybe", "URINGIO_ACCESS_LOG: expected 1 or 0 (true or false), "
                                    "got 'maybe'"),
    ("URINGIO_LIFESPAN", "sometimes", "URINGIO_LIFESPAN: expected one of auto, on, off, "
                                      "got 'sometimes'"),
])
def test_a_bad_environment_value_is_one_line(name, value, message):
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "m:a"], cwd=REPO,
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, name: value})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"python -m uringio serve: error: {message}"


# -- the app: --factory, --lifespan ----------------------------------------------------------


def test_factory_is_called_for_the_app(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:create_app", "--factory",
                           "--app-dir", APPS, "--port", "0"], backend)
    try:
        assert scope_of(port)["pid"] == proc.pid
    finally:
        assert stop_server(proc) == 0


def test_a_factory_that_raises_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("def make():\n    raise ValueError('no config')\n")
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "broken:make",
                           "--factory", "--app-dir", str(tmp_path), "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("uringio: error: the app factory 'broken:make' raised "
                                   "ValueError('no config')")


@pytest.mark.parametrize("mode, state", [("auto", True), ("on", True), ("off", False)])
def test_lifespan_modes_with_an_app_that_speaks_it(backend, mode, state):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--lifespan", mode], backend)
    try:
        assert bool(scope_of(port)["state"]) is state
    finally:
        assert stop_server(proc) == 0


def test_lifespan_on_refuses_an_app_without_it(backend):
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi",
                           "operate_app:no_lifespan", "--app-dir", APPS, "--port", "0",
                           "--lifespan", "on", "--backend", backend],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert ("the ASGI app's lifespan startup failed: the app raised RuntimeError('no lifespan "
            "here') on the lifespan scope (--lifespan on requires it)") in proc.stderr
    # auto: served all the same.
    proc, port, _ = start(["serve", "asgi", "operate_app:no_lifespan", "--app-dir", APPS,
                           "--port", "0"], backend)
    try:
        assert scope_of(port)["state"] == {}
    finally:
        assert stop_server(proc) == 0


# -- the socket: --backlog -------------------------------------------------------------------


def test_backlog_is_the_listening_sockets(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--backlog", "37"], backend)
    try:
        # ss shows a listening socket's backlog as its Send-Q.
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        assert out[0] == "LISTEN" and out[2] == "37", out
    finally:
        assert stop_server(proc) == 0


# -- stopping: --timeout-graceful-shutdown, --limit-max-requests ---------------------------


def test_timeout_graceful_shutdown_cuts_a_request_held_past_it(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--timeout-graceful-shutdown", "0.2"], backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as held:
            held.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
            got = b""
            while b"held;" not in got:
                chunk = held.recv(4096)
                assert chunk, got
                got += chunk
            began = time.monotonic()
            proc.terminate()
            assert proc.wait(TIMEOUT) == 0
            # Cut well before the default drain (5 s) would have: the option took.
            assert time.monotonic() - began < 4.0
            assert b"released" not in recv_until_eof(held)
    finally:
        stop_server(proc)


def test_limit_max_requests_recycles_workers_with_no_lost_request(backend):
    # Two workers, each stopping after 5 (+0..2) requests: 40 requests in a
    # row see several workers come and go, and every one is answered.
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--workers", "2", "--limit-max-requests", "5",
                           "--limit-max-requests-jitter", "2"], backend)
    try:
        pids = [scope_of(port)["pid"] for _ in range(40)]
        assert len(set(pids)) >= 40 // 7   # at most 7 requests per worker
        for pid in set(pids):
            assert pids.count(pid) <= 7
    finally:
        assert stop_server(proc) == 0
    assert "has started its maximum of requests" in proc.stderr.read()


def test_limit_max_requests_loses_nothing_under_concurrent_clients(backend):
    # Four clients at once, a fresh connection per request: connections a
    # retiring worker has just accepted (io_uring's multishot accept takes
    # them off the shared listener before the cancel lands) are served, not
    # closed under a request already sent.
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--workers", "2", "--limit-max-requests", "10"],
                          backend)
    failures: list = []
    pids: list[int] = []

    def client() -> None:
        for _ in range(50):
            try:
                pids.append(scope_of(port)["pid"])
            except (OSError, AssertionError, ValueError) as exc:
                failures.append(exc)
    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        assert stop_server(proc) == 0
    assert failures == [] and len(pids) == 200
    assert len(set(pids)) >= 200 // 40   # recycled many times over


def test_limit_max_requests_stops_a_single_process(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--limit-max-requests", "3"], backend)
    try:
        for _ in range(3):
            assert get(port)[0] == 200   # the third too: answered, then the exit
        assert proc.wait(TIMEOUT) == 0
    finally:
        stop_server(proc)


# -- replacing workers: SIGHUP, --workers-max-rss ------------------------------------------


class Clients:
    """Clients that keep requesting until stopped, as a load balancer's
    traffic would: each on a fresh connection, and one on a keep-alive
    connection. Every failure (refused, reset, no answer) is kept."""

    def __init__(self, port: int, count: int = 3) -> None:
        self.port = port
        self.failures: list = []
        self.pids: set[int] = set()
        self.served = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._fresh) for _ in range(count)]
        self._threads.append(threading.Thread(target=self._keep_alive))
        for thread in self._threads:
            thread.start()

    def _fresh(self) -> None:
        while not self._stop.is_set():
            try:
                self.pids.add(scope_of(self.port)["pid"])
                self.served += 1
            except (OSError, AssertionError, ValueError) as exc:
                self.failures.append(exc)

    def _keep_alive(self) -> None:
        # A client that reuses its connection, and opens another when the
        # server closed the last (after a response that said close, or
        # idle): a request it sent is never left unanswered.
        sock = None
        while not self._stop.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
                sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionError(f"closed with a request unanswered: {head!r}")
                    head += chunk
                head, _, body = head.partition(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
                while len(body) < length:
                    chunk = sock.recv(4096)
                    assert chunk, "closed in a body"
                    body += chunk
                self.served += 1
                if b"connection: close" in head.lower():
                    sock.close()
                    sock = None
            except (OSError, AssertionError, ValueError) as exc:
                self.failures.append(exc)
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2 * TIMEOUT)
        assert not any(thread.is_alive() for thread in self._threads)


def test_sighup_replaces_every_worker_with_no_refused_or_reset_connection(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--workers", "2"], backend)
    try:
        first = children(proc.pid)
        clients = Clients(port)
        try:
            for _ in range(2):
                before = children(proc.pid)
                served = clients.served
                proc.send_signal(signal.SIGHUP)
                # Both replaced (the old ones gone), and the clients served on.
                assert wait_for(lambda old=before: not children(proc.pid) & old
                                and len(children(proc.pid)) == 2, 3 * TIMEOUT)
                assert wait_for(lambda at=served: clients.served > at + 20, TIMEOUT)
        finally:
            clients.stop()
        assert clients.failures == []
        assert not children(proc.pid) & first
        assert clients.pids - first   # the new workers served
    finally:
        assert stop_server(proc) == 0
    assert proc.stderr.read().count("this worker retires (SIGHUP") == 4


def test_workers_max_rss_replaces_a_worker_past_it(backend):
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--workers", "2", "--workers-max-rss", "150"], backend)
    try:
        status, body = get(port, "/grow?200")   # that worker now holds 200 MiB more
        assert status == 200
        grown = json.loads(body)["pid"]
        assert wait_for(lambda: grown not in children(proc.pid), 3 * TIMEOUT)
        assert len(children(proc.pid)) == 2
        assert scope_of(port)["pid"] != grown
    finally:
        assert stop_server(proc) == 0
    assert f"worker {grown} uses" in proc.stderr.read()


# -- --reload --------------------------------------------------------------------------------


VERSIONED_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"{version}"
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def test_reload_picks_up_an_edited_app_file(backend, tmp_path):
    app_file = tmp_path / "edited.py"
    app_file.write_text(VERSIONED_APP.format(version="v1"))
    proc, port, _ = start(["serve", "asgi", "edited:app", "--app-dir", str(tmp_path),
                           "--port", "0", "--reload"], backend)
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    try:
        assert get(port, "/") == (200, b"v1")
        app_file.write_text(VERSIONED_APP.format(version="v2"))
        assert wait_for(lambda: get(port, "/") == (200, b"v2"), 3 * TIMEOUT)
        # An edit that does not import: the worker serving v2 goes on, and
        # the next good edit is picked up.
        app_file.write_text("async def app(scope, receive, send:\n")   # a SyntaxError
        assert wait_for(lambda: "its replacement failed" in "".join(errors),
                        3 * TIMEOUT), "".join(errors)
        assert get(port, "/") == (200, b"v2")
        app_file.write_text(VERSIONED_APP.format(version="v3"))
        assert wait_for(lambda: get(port, "/") == (200, b"v3"), 3 * TIMEOUT)
    finally:
        assert stop_server(proc) == 0


def test_reload_serves_an_edit_of_the_same_size_made_in_the_same_second(backend, tmp_path):
    # Python takes cached bytecode for its source when the source's size and
    # mtime, in whole seconds, are those it was compiled from: an edit that
    # changes one character within the second of the last save would be
    # served as the old code, had a worker cached the old one.
    app_file = tmp_path / "edited.py"
    second = int(time.time()) - 60
    app_file.write_text(VERSIONED_APP.format(version="v1"))
    os.utime(app_file, (second, second))
    proc, port, _ = start(["serve", "asgi", "edited:app", "--app-dir", str(tmp_path),
                           "--port", "0", "--reload"], backend,
                          env={"PYTHONDONTWRITEBYTECODE": ""})   # (as Python runs by default)
    try:
        assert get(port, "/") == (200, b"v1")
        edit = tmp_path / "edit.tmp"   # (not a .py: the watcher sees one change, the rename)
        edit.write_text(VERSIONED_APP.format(version="v2"))
        os.utime(edit, (second, second))
        os.replace(edit, app_file)
        assert wait_for(lambda: get(port, "/") == (200, b"v2"), 3 * TIMEOUT)
    finally:
        assert stop_server(proc) == 0


def test_the_reload_watcher_only_collects(tmp_path):
    """The watcher's thread records what changed and does nothing else: a
    log line it wrote while the supervisor forked would leave the new worker
    holding stderr's lock (the supervisor takes the paths and logs)."""
    from uringio.models.reload import Watcher
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("uringio")
    logger.addHandler(handler)
    watcher = Watcher([str(tmp_path)])
    try:
        (tmp_path / "a.py").write_text("x = 1\n")
        (tmp_path / "b.txt").write_text("not Python\n")
        taken: list[str] = []
        assert wait_for(lambda: bool(taken.extend(watcher.take()) or taken), TIMEOUT)
        assert taken == [str(tmp_path / "a.py")]
        assert watcher.take() == []
    finally:
        watcher.stop()
        logger.removeHandler(handler)
    assert [r.threadName for r in records if r.threadName != "MainThread"] == []


def test_reload_without_watchfiles_is_one_line(tmp_path):
    # watchfiles made unimportable for this process only.
    (tmp_path / "watchfiles.py").write_text("raise ImportError('not installed here')\n")
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "operate_app:app",
                           "--app-dir", APPS, "--port", "0", "--reload"], cwd=REPO,
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("uringio: error: --reload needs watchfiles: pip install "
                                   "'uringio[reload]' (or watchfiles)")


# -- logs: --access-log-format, --log-json, --log-config ------------------------------------


def serve_and_get(backend: str, options: list[str], path: str = "/scope?a=1"):
    """A server with ``options``, one request, stopped: its stderr lines."""
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", *options], backend)
    try:
        assert get(port, path)[0] == 200
    finally:
        assert stop_server(proc) == 0
    return [line for line in proc.stderr.read().splitlines() if line.strip()]


def test_access_log_format_names_the_fields(backend):
    lines = serve_and_get(backend, ["--access-log-format",
                                    "{method} {path}?{query} -> {status} in {duration_ms} ms"])
    access = [line for line in lines if "uringio.asgi.access" in line]
    assert len(access) == 1, lines
    assert re.fullmatch(r"INFO uringio\.asgi\.access: GET /scope\?a=1 -> 200 in \d+\.?\d* ms",
                        access[0]), access


def test_access_log_bytes_are_the_body_bytes_written(backend):
    # {bytes}: the response body as the app gave it, without the head or the
    # chunk framing; none for HEAD (the body is not written). One whole body
    # (the C path), a streamed one (chunked, the Python path), a HEAD.
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS, "--port", "0",
                           "--access-log-format", "{method} {path} {status} {bytes}"], backend)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("GET", "/scope")
        whole = conn.getresponse().read()
        conn.request("POST", "/hold", body=b"ab")
        streamed = conn.getresponse().read()
        conn.request("HEAD", "/scope")
        head = conn.getresponse()
        assert head.read() == b"" and int(head.headers["content-length"]) > 0
        conn.close()
    finally:
        assert stop_server(proc) == 0
    assert streamed == b"held;released"
    access = [line.partition("access: ")[2] for line in proc.stderr.read().splitlines()
              if "uringio.asgi.access" in line]
    assert access == [f"GET /scope 200 {len(whole)}", "POST /hold 200 13", "HEAD /scope 200 0"]


def test_log_json_is_a_json_object_per_line_with_the_access_fields(backend):
    lines = serve_and_get(backend, ["--log-json", "--access-log"])
    records = [json.loads(line) for line in lines]   # every line parses
    access = [r for r in records if r["logger"] == "uringio.asgi.access"]
    assert len(access) == 1, records
    line = access[0]
    assert (line["method"], line["path"], line["query"], line["status"]) == (
        "GET", "/scope", "a=1", 200)
    assert line["duration_ms"] >= 0 and line["level"] == "INFO"
    assert line["message"].endswith('"GET /scope HTTP/1.1" 200')


def test_log_config_file_decides_where_the_lines_go(backend, tmp_path):
    out = tmp_path / "server.log"
    config = {"version": 1, "disable_existing_loggers": False,
              "formatters": {"f": {"format": "[%(name)s] %(message)s"}},
              "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out),
                                    "formatter": "f"}},
              "loggers": {"uringio": {"handlers": ["file"], "level": "INFO"}}}
    (tmp_path / "logging.json").write_text(json.dumps(config))
    lines = serve_and_get(backend, ["--access-log", "--log-config",
                                    str(tmp_path / "logging.json")])
    assert not any("uringio" in line for line in lines), lines   # not on stderr
    written = out.read_text()
    assert '[uringio.asgi.access] 127.0.0.1:' in written and '"GET /scope HTTP/1.1" 200' in written


@pytest.mark.parametrize("options, message", [
    (["--access-log-format", "{nope}"], "argument --access-log-format: an access log format "
                                        "names only {client}, {method}, {path}, {query}, "
                                        "{http_version}, {status}, {bytes}, {duration_ms}, "
                                        "{pid} "
                                        "(KeyError('nope') in '{nope}')"),
    (["--log-config", "/no/such/file.json"], "--log-config /no/such/file.json: [Errno 2] No "
                                             "such file or directory: '/no/such/file.json'"),
])
def test_a_bad_log_option_is_one_line(options, message):
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "m:a", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line in (f"python -m uringio serve: error: {message}", f"uringio: error: {message}")


def test_a_worker_past_its_request_limit_is_replaced_at_once(backend):
    # Idle keep-alive connections keep a retiring worker alive until its
    # drain's end (--timeout-graceful-shutdown 6). Its replacement must not
    # wait for that: the supervisor starts it when the worker says it
    # retires, so no request waits on a slot with nobody accepting.
    proc, port, _ = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                           "--port", "0", "--workers", "2", "--limit-max-requests", "6",
                           "--timeout-graceful-shutdown", "6"], backend)
    idle = []
    try:
        slowest = 0.0
        for i in range(30):
            if i % 3 == 0:   # an idle keep-alive connection now and then
                sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                idle.append(sock)
            began = time.monotonic()
            assert get(port)[0] == 200
            slowest = max(slowest, time.monotonic() - began)
        # Far below the 6 s a request would wait for a lingering worker's exit.
        assert slowest < 3.0, slowest
    finally:
        for sock in idle:
            sock.close()
        assert stop_server(proc) == 0
