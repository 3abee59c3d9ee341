"""A raw ASGI app (no framework) for the server's tests of the spec's
corners: what receive() says after the body, and send() after the client
left."""

import asyncio
import contextvars

EVENTS: dict[str, object] = {}
SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def _respond(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/after-body":
        # The whole body, then a receive() that must wait for the end of
        # the response (not return another http.request at once).
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        later = asyncio.ensure_future(receive())
        await asyncio.sleep(0.05)
        EVENTS["waited"] = not later.done()
        await _respond(send, b"ok")
        EVENTS["after"] = (await later)["type"]
    elif path == "/forever":
        # Streams until send() raises: the client left (ASGI 2.4: OSError).
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536,
                            "more_body": True})
                await asyncio.sleep(0.001)
        except OSError:
            EVENTS["stopped"] = True
            raise
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend",
                    "path": scope["query_string"].decode()})
    elif path == "/events":
        await _respond(send, repr(sorted(EVENTS.items())).encode())
    elif path.endswith("/scope"):
        keys = ("http_version", "method", "root_path", "path", "raw_path", "query_string",
                "scheme")
        seen = [scope[key] for key in keys]
        whole = scope["query_string"] == b"whole"
        if whole:
            seen += [sorted(scope), scope["extensions"], scope["state"]]
        body = repr(seen).encode()
        if whole:
            # What an app does to its scope is its own: the next request's
            # scope starts as this one did.
            scope["extensions"]["http.response.pathsend"]["mine"] = True
            scope["extensions"]["mine"] = {}
            scope["state"]["mine"] = True
            scope["mine"] = True
        await _respond(send, body)
    elif path == "/task":
        # The task the app runs in is one and the same before and after it
        # waits (anyio's cancel scopes rely on it), and a variable it sets
        # is its own, not the next request's.
        before = asyncio.current_task()
        seen = SEEN.get()
        SEEN.set("set")
        if scope["query_string"] == b"wait":
            await asyncio.sleep(0.01)
        after = asyncio.current_task()
        await _respond(send, repr((before is not None and before is after, seen)).encode())
    elif path.endswith("/generated-headers"):
        # Headers as an iterable that can be read once (ASGI allows any),
        # one of which (Connection) the server must act on.
        made = [(b"x-made", b"lazily"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200,
                    "headers": ((name, value) for name, value in made)})
        await send({"type": "http.response.body", "body": b"generated"})
    elif path == "/raise":
        raise RuntimeError("raised before a response, as asked")
    elif path == "/half":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        if scope["query_string"] == b"wait":
            await asyncio.sleep(0.01)
        # ...and returns: a response cut short must not look complete.


def future_app(scope, receive, send):
    """An ASGI app that is not a coroutine function: it returns a future."""
    return asyncio.ensure_future(app(scope, receive, send))
