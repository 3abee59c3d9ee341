"""The ASGI apps asgi_bench.py serves on every server: each a module-level
ASGI callable, the same code whatever serves it.

* ``raw``: "Hello, World!" with no framework (what the server costs);
* ``json``: a small JSON document, no framework;
* ``stream``: 1 MiB in 16 chunks of 64 KiB, ``more_body`` each;
* ``mib``: 1 MiB in one body message;
* ``upload``: reads the whole request body, answers its length;
* ``starlette``: "Hello, World!" from a Starlette route.
"""

import json

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

DOC = json.dumps({"message": "Hello, World!", "items": list(range(20))}).encode()
DOC_LENGTH = b"%d" % len(DOC)
CHUNK = b"x" * 65536


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# Each app answers in its own coroutine, its messages written out as in
# uvicorn's README hello: what a request costs beyond that is the
# server's, not a helper's (a shared helper coroutine that formatted the
# length was 0.36 us of uringio's 2.45 us of Python per request). The
# length is given, as an app that knows it does (without one uvicorn
# would send the body chunked).


async def raw(scope, receive, send):
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})


async def json_doc(scope, receive, send):
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", DOC_LENGTH)]})
    await send({"type": "http.response.body", "body": DOC})


async def stream(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", b"%d" % (16 * len(CHUNK)))]})
    for i in range(16):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": i < 15})


MIB = b"y" * (1 << 20)
MIB_LENGTH = b"%d" % len(MIB)


async def mib(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", MIB_LENGTH)]})
    await send({"type": "http.response.body", "body": MIB})


async def upload(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"%d" % size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _hello(request):
    return PlainTextResponse("Hello, World!")


starlette = Starlette(routes=[Route("/", _hello)])

