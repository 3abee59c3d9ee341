"""A raw ASGI app for the conformance tests (tests/test_vectors.py,
tests/test_websocket_conformance.py): it answers every HTTP request with
what the server made of it, and echoes every WebSocket message as it came.

HTTP: 200, a JSON object of the request as the app got it -- ``method``,
``raw_path`` and ``query_string`` and ``body`` as latin-1 text (so that any
byte survives) -- whatever the method or path. A test compares it with
what the client sent, which is how it sees where the server put the
boundaries between pipelined requests.

WebSocket: accepted (no subprotocol), each message sent back as the same
kind, text as text and bytes as bytes, until the connection closes (a
send that finds it closed raises OSError, as ASGI says: the app ends).
"""

import json


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
            reply = ({"type": "websocket.send", "text": message["text"]}
                     if message.get("text") is not None
                     else {"type": "websocket.send", "bytes": message.get("bytes") or b""})
            try:
                await send(reply)
            except OSError:   # the connection closed meanwhile (ASGI: send raises)
                return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {"method": scope["method"], "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "body": body.decode("latin-1")}
    answer = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})
