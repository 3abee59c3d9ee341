"""Real asyncio applications, unmodified, on uringio's event loop, both
backends: an aiohttp server and client, redis' asyncio client against
redis-server, anyio's TCP streams and task groups."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess

import pytest

import uringio


def run(backend: str, main, timeout: float = 60.0):
    async def bounded():
        return await asyncio.wait_for(main(), timeout)
    return uringio.run(bounded(), backend=backend)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_aiohttp_server_and_client_exchange_requests(backend):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def hello(request):
        return web.json_response({"hello": request.match_info["name"],
                                  "q": request.query.get("q")})

    async def echo(request):
        return web.Response(body=await request.read())

    async def main():
        app = web.Application(client_max_size=16 << 20)
        app.router.add_get("/hello/{name}", hello)
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                for i in range(50):   # keep-alive: one connection, many requests
                    url = f"http://127.0.0.1:{port}/hello/n{i}?q={i}"
                    async with session.get(url) as response:
                        assert await response.json() == {"hello": f"n{i}", "q": str(i)}
                body = bytes(range(256)) * (12 << 12)   # 12 MiB
                async with session.post(f"http://127.0.0.1:{port}/echo", data=body) as response:
                    assert response.status == 200 and await response.read() == body
        finally:
            await runner.cleanup()

    run(backend, main)


@pytest.fixture(scope="module")
def redis_server():
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh --test installs it)")
    port = free_port()
    proc = subprocess.Popen([path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        for _ in range(500):   # until it answers, 5 s at most
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                import time
                time.sleep(0.01)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_asyncio_client_against_redis_server(backend, redis_server):
    redis = pytest.importorskip("redis.asyncio")

    async def main():
        client = redis.Redis(host="127.0.0.1", port=redis_server)
        try:
            await client.set(f"k-{backend}", b"v" * 100_000)
            assert await client.get(f"k-{backend}") == b"v" * 100_000
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(1000):
                    pipe.incr(f"n-{backend}")
                results = await pipe.execute()
            assert results[-1] - results[0] == 999
        finally:
            await client.aclose()

    run(backend, main)


def test_anyio_tcp_streams_and_task_groups(backend):
    anyio = pytest.importorskip("anyio")

    async def main():
        async def serve(stream):
            async with stream:
                async for chunk in stream:
                    await stream.send(chunk)

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        results = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)

            async def client(i):
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    payload = b"%d" % i * 1000
                    await stream.send(payload)
                    got = b""
                    while len(got) < len(payload):
                        got += await stream.receive()
                    results[i] = got == payload

            async with anyio.create_task_group() as clients:
                for i in range(20):
                    clients.start_soon(client, i)
            tg.cancel_scope.cancel()
        assert results == {i: True for i in range(20)}

    run(backend, main)


def test_starlette_under_uvicorn_with_uringios_loop_answers_curl(backend):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    import json
    import re
    import sys

    from conftest import REPO
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "starlette_app:app", "--app-dir", "tests/apps",
         "--loop", f"uringio.aio:new_event_loop_{backend}", "--host", "127.0.0.1",
         "--port", "0"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for _ in range(100):   # uvicorn says where it listens, on stderr
            line = proc.stderr.readline()
            if match := re.search(r"running on http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "uvicorn did not start"

        def curl(path: str) -> str:
            return subprocess.run(["curl", "-sS", "--max-time", "10",
                                   f"http://127.0.0.1:{port}{path}"],
                                  capture_output=True, text=True, check=True).stdout

        assert curl("/") == "Hello, World!"
        assert json.loads(curl("/hello/you")) == {"hello": "you", "loop": "uringio.aio.loop",
                                                  "backend": backend}
        assert curl("/stream") == "".join(f"{i:04d}\n" for i in range(100))
        proc.terminate()
        # uvicorn shuts down, then re-raises the signal it caught, whatever
        # the loop (asyncio's own gives -15 too): a clean, prompt exit.
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
