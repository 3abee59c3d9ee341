"""The ASGI server from Python, as uvicorn's API has it: ``Config`` and
``await Server(config).serve()`` on a running loop, ``server.should_exit``
from another thread, ``uringio.asgi.run``; and gunicorn's arbiter around it
(``gunicorn -k uringio.asgi.workers.UringioWorker``) serving an unmodified
FastAPI app, recycling workers with ``--max-requests``. Both backends."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import uringio.aio
from conftest import REPO, recv_until_eof, status_of, stop_server, wait_for
from uringio.asgi import Config, Server

APPS = os.path.join(REPO, "tests", "apps")
TIMEOUT = 10.0
sys.path.insert(0, APPS)
import operate_app  # noqa: E402


async def get(port: int, path: str = "/scope") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return status_of(answer), answer.partition(b"\r\n\r\n")[2]


def test_server_serve_on_the_running_loop(backend):
    # Serving is a coroutine among the program's others: a client on the
    # same loop, then should_exit, and serve() returns once drained.
    async def main():
        server = Server(Config(operate_app.app, port=0, backend=backend))
        listening = []
        serving = asyncio.ensure_future(server.serve(on_listening=listening.append))
        while not server.started:
            assert not serving.done(), serving
            await asyncio.sleep(0.01)
        port = listening[0].address[1]
        status, body = await get(port)
        assert status == 200 and json.loads(body)["state"]["started_by"] == os.getpid()
        server.should_exit = True
        assert await asyncio.wait_for(serving, TIMEOUT) == 0
        assert not server.started
        with pytest.raises(OSError):   # closed: nobody listens there any more
            await get(port)

    uringio.aio.run(main(), backend=backend)


def test_should_exit_from_another_thread_stops_run(backend):
    server = Server(Config("operate_app:app", port=0, app_dir=APPS, backend=backend))
    listening = []
    done = []
    thread = threading.Thread(target=lambda: done.append(server.run(
        on_listening=listening.append)))
    thread.start()
    try:
        assert wait_for(lambda: listening or not thread.is_alive(), TIMEOUT)
        assert listening[0].backend == backend
        port = listening[0].address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(recv_until_eof(sock)) == 200
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
    assert done == [0]


def test_config_refuses_what_it_does_not_know():
    with pytest.raises(TypeError, match="unknown ASGI server settings: keepalive"):
        Config(operate_app.app, keepalive=3)
    with pytest.raises(ValueError, match="lifespan must be one of auto, on, off"):
        Config(operate_app.app, lifespan="yes")
    with pytest.raises(ValueError, match="a Unix socket path or an fd, not both"):
        Config(operate_app.app, uds="/tmp/x.sock", fd=3)


RUN_SCRIPT = """
import sys
import uringio.asgi
sys.exit(uringio.asgi.run("operate_app:app", port=0, app_dir={apps!r}, backend={backend!r},
                          workers={workers},
                          on_listening=lambda s: print("listening on", s.address, flush=True)))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_run_serves_until_sigterm(backend, workers):
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT.format(
        apps=APPS, backend=backend, workers=workers)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"\('127\.0\.0\.1', (\d+)\)", line).group(1))
        status, _ = asyncio.run(get(port))
        assert status == 200
    finally:
        assert stop_server(proc) == 0, proc.stderr.read()


# -- gunicorn ------------------------------------------------------------------------------------


def gunicorn(backend: str, *options: str):
    """gunicorn with uringio's worker class on a free port; (process, port)."""
    tool = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    assert tool, "gunicorn is missing (pip install -e '.[test]' installs it)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([tool, "-k", "uringio.asgi.workers.UringioWorker",
                             "-b", f"127.0.0.1:{port}", "--chdir", APPS, *options],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "URINGIO_BACKEND": backend})
    return proc, port


def request_when_up(port: int, path: str, deadline: float) -> tuple[int, bytes]:
    """One GET, retried while gunicorn's workers are still booting."""
    while True:
        try:
            return asyncio.run(get(port, path))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_gunicorn_serves_a_fastapi_app_with_uringios_worker(backend):
    proc, port = gunicorn(backend, "-w", "2", "fastapi_app:app")
    try:
        deadline = time.monotonic() + 30
        status, body = request_when_up(port, "/items/7?q=x", deadline)
        assert status == 200 and json.loads(body) == {"item_id": 7, "q": "x"}, body
    finally:
        assert stop_server(proc, timeout=30) == 0
    log = proc.stderr.read()
    assert "Booting worker" in log and "Traceback" not in log, log


def test_gunicorn_max_requests_recycles_workers_with_no_lost_request(backend):
    proc, port = gunicorn(backend, "-w", "2", "--max-requests", "5", "operate_app:app")
    try:
        deadline = time.monotonic() + 30
        pids = []
        for _ in range(30):
            status, body = request_when_up(port, "/scope", deadline)
            assert status == 200, body
            pids.append(json.loads(body)["pid"])
        assert len(set(pids)) >= 30 // 5
    finally:
        assert stop_server(proc, timeout=30) == 0
    assert "has started its maximum of requests" in proc.stderr.read()


def test_gunicorn_stops_when_the_apps_lifespan_fails(backend, tmp_path):
    (tmp_path / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n")
    tool = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    proc = subprocess.run([tool, "-k", "uringio.asgi.workers.UringioWorker", "-b",
                           "127.0.0.1:0", "--chdir", str(tmp_path), "failing:app"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "URINGIO_BACKEND": backend})
    # gunicorn's arbiter halts on a worker's boot error instead of restarting it forever.
    assert proc.returncode == 3, proc.stderr
    assert "no database" in proc.stderr and "Worker failed to boot" in proc.stderr
