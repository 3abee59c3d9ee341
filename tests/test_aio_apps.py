"""Real asyncio applications, unmodified, on uringio's event loop, both
backends: an aiohttp server and client, redis' asyncio client against
redis-server, anyio's TCP streams and task groups."""

from __future__ import annotations

import asyncio
import shutil
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
