"""The documentation site: it builds under ``mkdocs build --strict``, and
every tutorial's example runs as the reader would run it, on both backends,
answering a real client."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, recv_exactly, start_server, stop_server, threads_of, wait_for

pytestmark = pytest.mark.timeout(120)

BUILD_TIMEOUT = 90


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once with ``mkdocs build --strict`` into a temporary
    directory: (exit status, output, site directory)."""
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(site_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr, site_dir


def _page(site_dir, name: str) -> str:
    with open(os.path.join(site_dir, name, "index.html"), encoding="utf-8") as f:
        return f.read()


def test_mkdocs_build_strict(site):
    rc, output, site_dir = site
    assert rc == 0, output
    for page in ("tutorial-echo", "tutorial-epoll", "tutorial-models", "tutorial-protocols",
                 "tutorial-asyncio", "tutorial-files", "tutorial-asgi", "deploy", "options",
                 "proxy", "design", "models", "http", "resp", "asyncio", "benchmarks",
                 "reference"):
        assert os.path.exists(os.path.join(site_dir, page, "index.html")), page
    assert os.path.exists(os.path.join(site_dir, "img", "echo_bench.png"))


def test_tutorials_include_the_real_examples(site):
    rc, output, site_dir = site
    assert rc == 0, output
    echo = _page(site_dir, "tutorial-echo")
    # Included from examples/, not pasted; the section markers are gone.
    assert "serve_connection" in echo and "on_sent" in echo
    assert "pause_reading" in echo   # examples/echo_protocol.py's Echo
    assert "blocking" in _page(site_dir, "tutorial-models")
    assert "http_factory" in _page(site_dir, "tutorial-protocols")
    assert "direction_over" in _page(site_dir, "proxy")   # examples/proxy.py
    assert "iter_text" in _page(site_dir, "tutorial-asgi")   # examples/fastapi_app.py
    for name in os.listdir(site_dir):
        path = os.path.join(site_dir, name, "index.html")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                html = f.read()
            assert "--8&lt;--" not in html and "[start:" not in html, name


def test_epoll_tutorial_has_mermaid_diagrams(site):
    rc, output, site_dir = site
    assert rc == 0, output
    page = _page(site_dir, "tutorial-epoll")
    assert page.count('class="mermaid"') >= 2, "one sequence diagram per backend"
    assert page.count("sequenceDiagram") >= 2
    # Mermaid is served from the site itself, not a CDN.
    assert "javascripts/mermaid.min.js" in page
    assert os.path.getsize(os.path.join(site_dir, "javascripts", "mermaid.min.js")) > 100_000


# -- the tutorials' servers, run as a reader runs them -------------------------

def _stop(proc) -> None:
    rc = stop_server(proc)
    assert rc == 0, proc.stderr.read()


ECHO_COMMANDS = {
    "echo_server": ["examples/echo_server.py", "--port", "0"],
    "echo_protocol": ["examples/echo_protocol.py", "--port", "0"],
    "serve_echo": ["-m", "uringio", "serve", "echo", "--port", "0"],
    "asyncio_echo": ["examples/asyncio_echo.py", "--port", "0"],   # tutorial-asyncio.md
}


@pytest.mark.parametrize("command", list(ECHO_COMMANDS))
def test_echo_tutorials(backend, command):
    """tutorial-echo.md and tutorial-epoll.md: the same servers on both backends."""
    proc, port = start_server(ECHO_COMMANDS[command], backend)
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        for round_ in range(20):
            for i, client in enumerate(clients):
                client.sendall(b"%d:%d;" % (i, round_))
            for i, client in enumerate(clients):
                want = b"%d:%d;" % (i, round_)
                assert recv_exactly(client, len(want)) == want
        # What the tutorial sends.
        clients[0].sendall(b"hello, ring")
        assert recv_exactly(clients[0], 11) == b"hello, ring"
        # EOF on one connection: the server closes its side, the others go on.
        clients[0].shutdown(socket.SHUT_WR)
        assert clients[0].recv(100) == b""
        clients[1].sendall(b"still here")
        assert recv_exactly(clients[1], 10) == b"still here"
        for client in clients:
            client.close()
        _stop(proc)
    finally:
        stop_server(proc)


def test_echo_protocol_large_payload(backend):
    """The Protocol version keeps a peer's megabyte in order (flow control on)."""
    proc, port = start_server(ECHO_COMMANDS["echo_protocol"], backend)
    try:
        payload = bytes(range(256)) * 4096   # 1 MiB
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
            sender.start()
            assert recv_exactly(client, len(payload)) == payload
            sender.join(10)
        _stop(proc)
    finally:
        stop_server(proc)


def _eight_requests(port: int) -> tuple[list[bytes], float]:
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    try:
        start = time.monotonic()
        for i, client in enumerate(clients):
            client.sendall(b"request %d" % i)
        replies = [recv_exactly(client, len(b"request 0")) for client in clients]
        return replies, time.monotonic() - start
    finally:
        for client in clients:
            client.close()


def test_blocking_pool_tutorial(backend):
    """tutorial-models.md: each of eight calls is answered in upper case,
    and replies on one connection keep the order of the data."""
    proc, port = start_server(["examples/blocking_pool.py", "--port", "0", "--work-ms", "100"],
                              backend)
    try:
        replies, _ = _eight_requests(port)
        assert replies == [b"REQUEST %d" % i for i in range(8)]
        # Several chunks on one connection, each worked on in its own thread:
        # the replies come back in the order the data arrived.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = b""
            for i in range(5):
                part = b"part %d;" % i
                client.sendall(part)
                sent += part
                time.sleep(0.01)   # most likely a chunk each (it passes either way)
            assert recv_exactly(client, len(sent)) == sent.upper()
        _stop(proc)
    finally:
        stop_server(proc)


def test_blocking_pool_tutorial_runs_eight_calls_at_once(backend):
    """tutorial-models.md: under ``pool`` eight calls run at once, one on
    each of the eight worker threads. The calls here last an hour: the
    pool starts a thread only when none is idle, so eight threads busy
    together show all eight calls in flight at the same time, whatever
    this machine's speed (one at a time, it would never need a second)."""
    proc, port = start_server(["examples/blocking_pool.py", "--port", "0",
                               "--work-ms", str(3600 * 1000)], backend)
    clients = []
    try:
        before = threads_of(proc.pid)
        for i in range(8):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            clients[-1].sendall(b"request %d" % i)
        assert wait_for(lambda: threads_of(proc.pid) == before + 8), threads_of(proc.pid) - before
    finally:
        for client in clients:
            client.close()
        stop_server(proc, signal.SIGKILL)   # the calls would not end by themselves


def test_blocking_pool_tutorial_single_model(backend):
    """The same class under ``--model single``: the calls run one at a time."""
    proc, port = start_server(["examples/blocking_pool.py", "--port", "0", "--work-ms", "100",
                               "--model", "single"], backend)
    try:
        replies, elapsed = _eight_requests(port)
        assert replies == [b"REQUEST %d" % i for i in range(8)]
        assert elapsed >= 0.75, f"single model answered 8 x 100 ms in {elapsed:.2f} s"
        _stop(proc)
    finally:
        stop_server(proc)


def test_aiohttp_app_tutorial(backend):
    """tutorial-asyncio.md: the unmodified aiohttp app, over one keep-alive
    connection, with http.client."""
    pytest.importorskip("aiohttp")
    proc, port = start_server(["examples/aiohttp_app.py", "--port", "0"], backend)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/hello/you")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"hello": "you"})
        body = os.urandom(512 * 1024)
        conn.request("POST", "/echo", body=body)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, body)
        conn.close()
        _stop(proc)
    finally:
        stop_server(proc)


def test_http_app_tutorial(backend):
    """tutorial-protocols.md: the router example, answered over one keep-alive
    connection, with http.client."""
    proc, port = start_server(["examples/http_app.py", "--port", "0"], backend)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        def get(method, path, body=None):
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), response.read(), response

        status, ctype, body, _ = get("GET", "/hello?name=reader")
        assert (status, body) == (200, b"hello, reader\n")
        assert ctype == "text/plain; charset=utf-8"
        status, ctype, body, _ = get("GET", "/add?a=2&b=40")
        assert status == 200 and ctype == "application/json"
        assert json.loads(body) == {"a": 2, "b": 40, "sum": 42}
        assert get("GET", "/add?a=1&b=2")[2] == b'{"a":1,"b":2,"sum":3}'
        status, _, body, _ = get("GET", "/add?a=x")
        assert status == 400 and json.loads(body) == {"error": "need integers a and b"}
        status, _, body, _ = get("POST", "/upper", b"shout this")
        assert (status, body) == (200, b"SHOUT THIS")
        assert get("POST", "/upper", b"again, same connection")[2] == b"AGAIN, SAME CONNECTION"
        status, _, _, response = get("GET", "/upper")
        assert status == 405 and response.getheader("Allow") == "POST"
        assert get("GET", "/nope")[0] == 404
        conn.close()
        _stop(proc)
    finally:
        stop_server(proc)


def test_resp_tutorial(backend):
    """tutorial-protocols.md: ``python -m uringio serve resp`` with redis-py,
    and with redis-cli where it is installed."""
    redis = pytest.importorskip("redis")
    proc, port = start_server(["-m", "uringio", "serve", "resp", "--port", "0"], backend)
    try:
        r = redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)
        assert r.set("greeting", "hello") is True
        assert r.get("greeting") == b"hello"
        assert r.mget("greeting", "missing") == [b"hello", None]
        pipe = r.pipeline(transaction=False)
        for _ in range(3):
            pipe.incr("counter")
        assert pipe.execute() == [1, 2, 3]
        with pytest.raises(redis.ResponseError, match="not an integer"):
            r.incr("greeting")
        r.close()

        cli = shutil.which("redis-cli")
        if cli is not None:   # scripts/setup.sh --test installs redis-tools
            def run(*args):
                out = subprocess.run([cli, "-p", str(port), *args], capture_output=True,
                                     text=True, timeout=10)
                assert out.returncode == 0, out.stderr
                return out.stdout.strip()
            assert run("SET", "greeting", "hi") == "OK"
            assert run("GET", "greeting") == "hi"
            assert run("INCR", "hits") == "1"
            assert run("INCR", "hits") == "2"
            assert "not an integer" in run("INCR", "greeting")
        _stop(proc)
    finally:
        stop_server(proc)


def test_fastapi_tutorial(backend):
    """tutorial-asgi.md: examples/fastapi_app.py under serve asgi, as the
    page runs it, answering what the page shows."""
    import httpx
    from websockets.sync.client import connect

    proc, port = start_server(["-m", "uringio", "serve", "asgi", "fastapi_app:app",
                               "--app-dir", "examples", "--port", "0"], backend)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/").json() == {"hello": "world", "loop": "uringio.aio.loop"}
        assert httpx.get(f"{base}/items/7?detail=true").json() == {"item_id": 7, "detail": True}
        assert httpx.post(f"{base}/orders", json={"item": "ring"}).json() == {
            "ordered": "ring", "quantity": 1}
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("ping")
            assert ws.recv() == "ping"
        _stop(proc)
    finally:
        stop_server(proc)


def _click_options(command) -> set[str]:
    """The long options of a click command, without their --no- forms."""
    names = {o for p in command.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]
             if o.startswith("--")}
    return {n for n in names if not (n.startswith("--no-") and "--" + n[5:] in names)}


def _covered(option: str, text: str) -> bool:
    """``option`` is named in the table, or covered by a row's ``--prefix-*``."""
    if f"`{option}`" in text or f"`{option} " in text:
        return True
    return any(option.startswith(prefix) for prefix in re.findall(r"`(--[a-z0-9-]+)\*", text))


def test_options_page_maps_every_uvicorn_and_granian_option():
    """docs/options.md: every option of the uvicorn and granian installed
    here, and every option of ``serve asgi``, has its row."""
    import importlib

    import granian.cli

    from uringio.cli import _serve_parser

    with open(os.path.join(REPO, "docs", "options.md"), encoding="utf-8") as f:
        text = f.read()
    uvicorn_cli = importlib.import_module("uvicorn.main").main
    for server, options in (("uvicorn", _click_options(uvicorn_cli)),
                            ("granian", _click_options(granian.cli.cli))):
        missing = sorted(o for o in options if not _covered(o, text))
        assert not missing, f"{server} options without a row: {missing}"
    # serve's options that are not about the ASGI server are another page's.
    not_asgi = {"--model", "--threads", "--work-ms", "--static", "--static-read", "--to",
                "--relay", "--idle-timeout", "--help", "--reuse-port"}
    ours = {o for action in _serve_parser()._actions for o in action.option_strings
            if o.startswith("--")} - not_asgi
    missing = sorted(o for o in ours if not _covered(o, text))
    assert not missing, f"serve asgi options without a row: {missing}"
