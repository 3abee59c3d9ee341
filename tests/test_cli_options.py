"""The options of ``python -m uringio`` around a server's app, as a user
runs them: serve asgi's --limit-concurrency and --access-log, --log-level,
--reuse-port; and the errors of options that do not go together and of a
MODULE:APP that names nothing to serve (one line, exit status 2)."""

import asyncio
import os
import socket
import subprocess
import sys

import pytest

import uringio
from conftest import REPO, recv_until_eof, start_server, status_of, stop_server
from uringio.asgi.http import ServerState

# The ASGI app of these tests, written to the test's own directory (--app-dir).
HELD_APP = '''
NOT_CALLABLE = 42


async def app(scope, receive, send):
    if scope["type"] != "http":
        return   # lifespan: served without it, which the server logs at INFO
    if scope["path"] == "/hold":
        # The response in two pieces: "held;" at once, "released" once the
        # request's body (which the client holds back) has come. In between
        # the request is in flight, for as long as the test wants.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held;", "more_body": True})
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.body", "body": b"released"})
        return
    # Anything else: "METHOD PATH", with the status the query string names.
    body = scope["method"].encode() + b" " + scope["path"].encode()
    await send({"type": "http.response.start", "status": int(scope["query_string"] or b"200"),
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
'''

# A module that exists, and fails to import something else whose name its
# own begins with.
NEEDS_MISSING = "import needs_mis\n\napp = None\n"

MAX_RESPONSE = 1 << 20   # what any response here may grow to before a test gives up


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "held_app.py").write_text(HELD_APP)
    (tmp_path / "needs_missing.py").write_text(NEEDS_MISSING)
    return tmp_path


def serve_asgi(backend: str, app_dir, *options: str, log_level: str | None = None):
    level = ["--log-level", log_level] if log_level else []
    return start_server(["-m", "uringio", *level, "serve", "asgi", "held_app:app",
                         "--app-dir", str(app_dir), "--port", "0", *options], backend)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def recv_until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    """``data`` and what ``sock`` receives after it, until ``marker`` is in it."""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
        assert len(data) < MAX_RESPONSE, data[:200]
    return data


def dechunk(body: bytes) -> bytes:
    """The bytes of a whole chunked body (its last chunk included)."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2:]


def response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one response with a Content-Length."""
    data = recv_until(sock, b"", b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(body)} of {length} body bytes"
        body += chunk
    assert len(body) == length, body   # nothing more than asked was answered
    return status_of(head), body


def request(method: str, target: str, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            f"{connection}\r\n").encode()


def stderr_lines(proc) -> list[str]:
    """A stopped server's stderr, a line each."""
    return [line for line in proc.stderr.read().splitlines() if line.strip()]


# -- serve asgi --limit-concurrency ---------------------------------------------------


@pytest.mark.parametrize("limit, status", [(None, 200), ("2", 200), ("1", 503)],
                         ids=["no-limit", "limit-2", "limit-1"])
def test_a_request_past_limit_concurrency_gets_503(backend, app_dir, limit, status):
    options = ["--limit-concurrency", limit] if limit else []
    proc, port = serve_asgi(backend, app_dir, *options)
    try:
        with connect(port) as held:
            held.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
            got = recv_until(held, b"", b"held;")   # the app runs, waiting for the body
            assert status_of(got) == 200
            # One request in flight: a second, on a connection of its own, is
            # one past a limit of 1, and within a limit of 2.
            with connect(port) as other:
                other.sendall(request("GET", "/quick", close=True))
                answer = recv_until_eof(other)
            assert status_of(answer) == status, answer
            if status == 503:
                assert answer.endswith(b"\r\n\r\n503 Service Unavailable\n"), answer
            else:
                assert answer.endswith(b"\r\n\r\nGET /quick"), answer
            held.sendall(b"x")   # the body: the held request ends
            got = recv_until(held, got, b"\r\n0\r\n\r\n")
            assert dechunk(got.partition(b"\r\n\r\n")[2]) == b"held;released"
            # The limit counts what is in flight: the held connection is
            # served again, however soon its next request comes.
            held.sendall(request("GET", "/after"))
            assert response(held) == (200, b"GET /after")
    finally:
        assert stop_server(proc) == 0


def test_a_request_pipelined_behind_a_finished_one_is_within_the_limit(backend, app_dir):
    proc, port = serve_asgi(backend, app_dir, "--limit-concurrency", "1")
    try:
        with connect(port) as held:
            held.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
            got = recv_until(held, b"", b"held;")
            # The body, and the next request behind it: that one starts as
            # the held one's response ends, one request at a time.
            held.sendall(b"x" + request("GET", "/next"))
            got = recv_until(held, got, b"GET /next")   # (a 503 would close instead)
            first, end, following = got.partition(b"\r\n0\r\n\r\n")
            assert dechunk(first.partition(b"\r\n\r\n")[2] + end) == b"held;released"
            assert status_of(following) == 200 and following.endswith(b"\r\n\r\nGET /next")
    finally:
        assert stop_server(proc) == 0


def test_a_request_task_done_or_answering_is_not_counted_against_the_limit(backend):
    # In process, where the order of the loop's callbacks is known: a
    # finished task stays in ServerState.tasks until its done callback runs,
    # a turn after it finished; a request that comes in meanwhile (a
    # keep-alive client's next) is not past the limit.
    async def main():
        loop = asyncio.get_running_loop()
        state = ServerState(None, limit_concurrency=1)
        gate = asyncio.Event()
        task = loop.create_task(gate.wait())
        state.track(task)
        await asyncio.sleep(0)
        assert state.busy(1, loop)   # one request running: a second is past the limit
        assert not state.busy(2, loop)
        gate.set()
        await asyncio.sleep(0)   # the task ends; its done callback comes after this
        assert task.done() and task in state.tasks
        assert not state.busy(1, loop)
        await asyncio.sleep(0)
        assert not state.tasks

        async def answering():
            # The task the next pipelined request starts from, its own
            # response written: not counted.
            return state.busy(1, loop)
        own = loop.create_task(answering())
        state.track(own)
        assert await own is False

    uringio.run(asyncio.wait_for(main(), 30), backend=backend)


# -- serve asgi --access-log, and --log-level ----------------------------------------


REQUESTS = [("GET", "/a", 200), ("POST", "/b?201", 201), ("DELETE", "/c/d?404", 404)]


def served_requests(port: int) -> str:
    """REQUESTS answered on one connection: the client's address."""
    with connect(port) as sock:
        for method, target, status in REQUESTS:
            sock.sendall(request(method, target))
            assert response(sock) == (status, f"{method} {target.split('?')[0]}".encode())
        host, client_port = sock.getsockname()[:2]
    return f"{host}:{client_port}"


@pytest.mark.parametrize("access_log", [True, False], ids=["access-log", "no-access-log"])
def test_access_log_is_a_line_per_request_and_only_with_the_option(backend, app_dir,
                                                                   access_log):
    proc, port = serve_asgi(backend, app_dir, *(["--access-log"] if access_log else []))
    try:
        client = served_requests(port)
    finally:
        assert stop_server(proc) == 0
    lines = stderr_lines(proc)
    # The server logs at INFO (the default level): its lifespan line shows it.
    assert ("INFO uringio.asgi: ASGI 'lifespan' returned before startup; serving without it"
            in lines), lines
    access = [line for line in lines if "uringio.asgi.access" in line]
    expected = [f'INFO uringio.asgi.access: {client} - "{method} {target.split("?")[0]} '
                f'HTTP/1.1" {status}' for method, target, status in REQUESTS]
    assert access == (expected if access_log else []), lines


@pytest.mark.parametrize("level", ["INFO", "warning", "ERROR"])
def test_log_level_above_info_hides_info_lines(backend, app_dir, level):
    proc, port = serve_asgi(backend, app_dir, "--access-log", log_level=level)
    try:
        client = served_requests(port)
    finally:
        assert stop_server(proc) == 0
    lines = stderr_lines(proc)
    if level == "INFO":
        assert len([line for line in lines if client in line]) == len(REQUESTS), lines
        assert any("'lifespan' returned before startup" in line for line in lines), lines
    else:
        assert lines == []   # neither the lifespan line nor the access lines


@pytest.mark.parametrize("level", ["DEBUG", "debug", "INFO"])
def test_log_level_debug_shows_debug_lines(backend, level):
    # A connection idle past --idle-timeout is closed with a DEBUG line.
    proc, port = start_server(["-m", "uringio", "--log-level", level, "serve", "echo",
                               "--port", "0", "--idle-timeout", "0.2"], backend)
    try:
        with connect(port) as sock:
            host, client_port = sock.getsockname()[:2]
            client = f"{host}:{client_port}"
            try:
                assert sock.recv(10) == b""   # closed by the server, idle
            except ConnectionResetError:
                pass
    finally:
        assert stop_server(proc) == 0
    lines = stderr_lines(proc)
    debug = (f"DEBUG uringio: closing the connection from {client}: its peer sent and "
             "acknowledged nothing for 0.2 s")
    if level.upper() == "DEBUG":
        assert debug in lines, lines
    else:
        assert not any(line.startswith("DEBUG") for line in lines), lines


# -- --reuse-port ------------------------------------------------------------------


def ask_pid(port: int) -> int:
    with connect(port) as sock:
        sock.sendall(b"?")
        return int(recv_until(sock, b"", b"\n"))


def whoami(backend: str, port: int, *options: str):
    return start_server(["-m", "uringio", "serve", "whoami", "--port", str(port), *options],
                        backend)


def share_a_port(start, ask) -> None:
    """Start a server on a free port with ``start(0)``, a second on the same
    port with ``start(port)``: both start, and the kernel spreads the
    connections over both listeners, so ``ask(port)`` (a server's pid) sees
    both. Each is stopped by its pid."""
    first, port = start(0)
    try:
        second, same = start(port)
        try:
            assert same == port
            seen = set()
            for _ in range(200):
                seen.add(ask(port))
                if len(seen) == 2:
                    break
            assert seen == {first.pid, second.pid}
        finally:
            assert stop_server(second) == 0
    finally:
        assert stop_server(first) == 0


@pytest.mark.parametrize("model", ["single", "pool"])
def test_two_servers_share_a_port_with_reuse_port(backend, model):
    share_a_port(lambda port: whoami(backend, port, "--model", model, "--reuse-port"), ask_pid)


def test_two_servers_share_a_port_with_reuse_port_under_threads():
    share_a_port(lambda port: whoami("auto", port, "--model", "threads", "--reuse-port"),
                 ask_pid)


def run_cli(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uringio", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(args: list[str]) -> str:
    """``python -m uringio ARGS`` fails as a user's mistake should: exit
    status 2, one line on stderr, no traceback, nothing on stdout. The line."""
    proc = run_cli(args)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert proc.stdout == "", proc.stdout
    return lines[0]


@pytest.mark.parametrize("first_reuses", [True, False], ids=["second-without", "first-without"])
def test_without_reuse_port_on_both_the_second_server_fails_in_one_line(backend, first_reuses):
    first, port = whoami(backend, 0, *(["--reuse-port"] if first_reuses else []))
    try:
        line = one_line_error(["serve", "whoami", "--port", str(port), "--backend", backend,
                               *([] if first_reuses else ["--reuse-port"])])
        assert line == (f"uringio: error: cannot listen on 127.0.0.1:{port}: address already "
                        "in use; pick another --port, or 0 for a free one")
        assert ask_pid(port) == first.pid   # the first one serves on
    finally:
        assert stop_server(first) == 0


# -- option combinations, and MODULE:APP -------------------------------------------------


SERVE_ERROR = "python -m uringio serve: error: "


COMBINATIONS = [
    (["http", "--work-ms", "5"], "--work-ms goes with the echo app"),
    (["resp", "--model", "pool", "--work-ms", "1"], "--work-ms goes with the echo app"),
    (["proxy"], "the proxy app needs --to HOST:PORT, and only it takes one"),
    (["echo", "--to", "127.0.0.1:9"], "the proxy app needs --to HOST:PORT, and only it takes one"),
    (["http", "--model", "multi", "--to", "127.0.0.1:9"],
     "the proxy app needs --to HOST:PORT, and only it takes one"),
    (["proxy", "--to", "127.0.0.1:9", "--model", "threads"],
     "the proxy relays on a loop: use --model single, pool or multi"),
    (["asgi"], "serve asgi needs MODULE:APP (say main:app), and only it takes one"),
    (["echo", "held_app:app"], "serve asgi needs MODULE:APP (say main:app), and only it takes one"),
    (["asgi", "held_app:app", "--model", "pool"],
     "the ASGI server runs an asyncio loop per process: use --model single or multi"),
    (["asgi", "held_app:app", "--model", "threads"],
     "the ASGI server runs an asyncio loop per process: use --model single or multi"),
    (["proxy", "--to", "nocolon"], "argument --to: expected HOST:PORT, got 'nocolon'"),
    (["proxy", "--to", "127.0.0.1:0"], "argument --to: expected HOST:PORT, got '127.0.0.1:0'"),
]


@pytest.mark.parametrize("args, message", COMBINATIONS,
                         ids=[" ".join(args) for args, _ in COMBINATIONS])
def test_options_that_do_not_go_together_are_one_line(app_dir, args, message):
    # --port 0: were the check missing, the server would not take a real port.
    line = one_line_error(["serve", *args, "--app-dir", str(app_dir), "--port", "0"])
    assert line == SERVE_ERROR + message


def test_an_unknown_log_level_is_one_line():
    line = one_line_error(["--log-level", "LOUD", "serve", "echo", "--port", "0"])
    assert line == ("python -m uringio: error: argument --log-level: "
                    "expected DEBUG, INFO, WARNING or ERROR, got 'LOUD'")


BAD_TARGETS = [
    ("no_such_module:app", "no module 'no_such_module' under {dir}"),
    ("no_such_package.sub:app", "no module 'no_such_package.sub' under {dir}"),
    ("held_app:nope", "module 'held_app' has no 'nope'"),
    ("held_app:app.nope", "module 'held_app' has no 'app.nope'"),
    ("held_app", "expected MODULE:APP (say main:app), got 'held_app'"),
    ("held_app:", "expected MODULE:APP (say main:app), got 'held_app:'"),
    (":app", "expected MODULE:APP (say main:app), got ':app'"),
    ("held_app:NOT_CALLABLE", "'held_app:NOT_CALLABLE' is not callable (an ASGI app is)"),
]


@pytest.mark.parametrize("target, message", BAD_TARGETS,
                         ids=[target for target, _ in BAD_TARGETS])
@pytest.mark.parametrize("model", [[], ["--model", "multi", "--workers", "2"]],
                         ids=["single", "multi"])
def test_a_bad_module_app_is_one_line(app_dir, target, message, model):
    line = one_line_error(["serve", "asgi", target, "--app-dir", str(app_dir), "--port", "0",
                           "--backend", "epoll", *model])
    assert line == "uringio: error: " + message.format(dir=os.path.abspath(app_dir))


def test_an_app_module_failing_to_import_another_is_not_called_missing(app_dir):
    # needs_missing.py is there; what it imports (needs_mis) is not. Its
    # traceback says so, rather than a line that calls needs_missing missing.
    proc = run_cli(["serve", "asgi", "needs_missing:app", "--app-dir", str(app_dir),
                    "--port", "0", "--backend", "epoll"])
    assert proc.returncode != 0
    assert "no module 'needs_missing'" not in proc.stderr, proc.stderr
    assert proc.stderr.rstrip().endswith("ModuleNotFoundError: No module named 'needs_mis'"), \
        proc.stderr


def test_two_asgi_servers_share_a_port_with_reuse_port(backend):
    """serve asgi takes --reuse-port too (it had been accepted and ignored):
    a second server on the same port starts, and the kernel spreads the
    connections over both."""
    import json

    apps = os.path.join(REPO, "tests", "apps")

    def asgi(port: int):
        return start_server(["-m", "uringio", "serve", "asgi", "fastapi_app:app", "--app-dir",
                             apps, "--port", str(port), "--reuse-port"], backend)

    def pid_of_answer(port: int) -> int:
        with connect(port) as sock:
            sock.sendall(b"GET /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        return json.loads(out.partition(b"\r\n\r\n")[2])["pid"]

    share_a_port(asgi, pid_of_answer)
