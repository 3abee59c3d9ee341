"""A raw ASGI app for tests/test_hostile.py: it writes what an app may be
made to write (a client's bytes echoed into a header), tells what the
server made of a request, and echoes WebSocket messages."""

import json

SPLITTING_HEADERS = {
    "/split-value": [(b"x-a", b"1\r\nSet-Cookie: evil=1")],
    "/split-name": [(b"x-a\r\nset-cookie", b"evil=1")],
    "/nul": [(b"x-a", b"1\x00evil")],
    "/bare-lf": [(b"location", b"/next\nset-cookie: evil=1")],
    "/space-in-name": [(b"x a", b"1")],
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()   # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or "",
                        "bytes": message.get("bytes")})
    path = scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path in SPLITTING_HEADERS:
        await send({"type": "http.response.start", "status": 200,
                    "headers": SPLITTING_HEADERS[path]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/split-streamed":   # the head written by the Python path (chunked)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-a", b"1\r\nSet-Cookie: evil=1")]})
        await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await send({"type": "http.response.body", "body": b"k"})
        return
    if path.startswith("/status/"):   # /status/CODE[/streamed]: content, whatever the status
        _, _, code, *streamed = path.split("/")
        await send({"type": "http.response.start", "status": int(code),
                    "headers": [(b"x-status", code.encode())]})
        if streamed:   # the head written by the Python path
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
            await send({"type": "http.response.body", "body": b"lo"})
        else:
            await send({"type": "http.response.body", "body": b"hello"})
        return
    seen = {"client": scope["client"], "scheme": scope["scheme"], "body": len(body)}
    answer = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})
