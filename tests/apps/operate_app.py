"""A raw ASGI app for the tests of how the server is run (sockets from
outside, options, recycling, the Python API, gunicorn):

* ``GET /scope``: JSON of what the app saw: the scope's server and client,
  the worker's pid, and the lifespan state (``{}`` when no lifespan ran);
* ``POST /hold``: "held;" at once, then "released" once the request's body
  has come, so that a request stays in flight as long as a test wants;
* ``GET /grow?MIB``: the worker keeps MIB more MiB (resident: written);
* ``GET /busy?PATH``: the file PATH.busy made, the worker's loop is held
  (a blocking wait, as a CPU-bound request holds it) until the file PATH
  exists, 10 s at most; then it answers as ``/scope``;
* a WebSocket: accepted, the scope's scheme sent, then an echo;
* ``create_app()``: a factory returning ``app`` (``--factory``);
* ``no_lifespan``: ``app`` without lifespan support (it raises on the scope).
"""

import json
import os
import time

KEPT: list[bytes] = []   # what /grow keeps


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_by"] = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        # Accept, say the scope's scheme (ws or wss), echo, until the client closes.
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["scheme"]})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    if scope["path"] == "/hold":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held;", "more_body": True})
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.body", "body": b"released"})
        return
    if scope["path"] == "/busy":
        with open(scope["query_string"] + b".busy", "wb"):
            pass
        deadline = time.monotonic() + 10.0
        while not os.path.exists(scope["query_string"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    if scope["path"] == "/grow":
        KEPT.append(b"x" * (int(scope["query_string"]) << 20))
    body = json.dumps({"server": scope["server"], "client": scope["client"],
                       "scheme": scope["scheme"],
                       "pid": os.getpid(), "state": dict(scope.get("state", {}))}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def create_app():
    return app


async def no_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")
    await app(scope, receive, send)
