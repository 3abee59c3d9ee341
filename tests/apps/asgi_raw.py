"""A raw ASGI app (no framework) for the server's tests of the spec's
corners: what receive() says after the body, and send() after the client
left."""

import asyncio
import contextvars
import weakref

EVENTS: dict[str, object] = {}
KEPT: list[asyncio.Task] = []
WEAKLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
KEPT_METHODS: list = []
KEPT_PARTS: list = []
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
    elif path == "/bodies":
        # Bodies of sizes around the one from which the server writes a
        # body apart from its head (and the send stream sends it from the
        # object): with a length, or chunked (no length, more_body), in
        # one message or several. ?SHAPE,SIZE,SIZE...
        shape, *sizes = scope["query_string"].decode().split(",")
        parts = [bytes([65 + i % 26]) * int(n) for i, n in enumerate(sizes)]
        headers = [(b"content-type", b"application/octet-stream")]
        if shape == "length":
            headers.append((b"content-length", b"%d" % sum(map(len, parts))))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part,
                        "more_body": i < len(parts) - 1})
    elif path == "/digest":
        # The request body as the app gets it: its sha256, the message
        # count, and whether a message followed one that said no more_body
        # (?slow: the app sleeps between receives, so the body piles up).
        import hashlib
        digest, messages, after_last, more = hashlib.sha256(), 0, False, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            if not isinstance(message["body"], bytes):
                raise TypeError("the body is not bytes")
            digest.update(message["body"])
            messages += 1
            more = message.get("more_body", False)
            if more and scope["query_string"] == b"slow":
                await asyncio.sleep(0.002)
        later = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        after_last = later.done() and later.result()["type"] == "http.request"
        later.cancel()
        await _respond(send, b"%s %d %d" % (digest.hexdigest().encode(), messages, after_last))
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
    elif path == "/task-state":
        # What a request finds on its task (read without leaving anything
        # on it), then leaves there as the query asks: the task kept, named,
        # cancelled or weakly referenced. The next request's task must show
        # none of it, whether it is new or a reused one.
        task = asyncio.current_task()
        found = (asyncio.Task.get_name(task), task.cancelling(), task.done(),
                 any(known is task for known in list(WEAKLY.keys()) + KEPT),
                 all(kept.done() for kept in KEPT))
        action = scope["query_string"]
        if action == b"keep":
            KEPT.append(task)
        elif action == b"name":
            task.set_name("mine")
        elif action == b"cancel":
            task.cancel()
        elif action == b"weak":
            WEAKLY[task] = action
        await _respond(send, repr(found).encode())
    elif path == "/echo-head":
        # The request as the app gets it: method, path, query, headers, body.
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await _respond(send, repr((scope["method"], scope["path"], scope["query_string"],
                                   scope["headers"], body)).encode())
    elif path in ("/scope-report", "/scope-overwrite", "/scope-keep"):
        # What a request finds in its scope, after changing what an earlier
        # request kept of its own (its asgi, state and extensions dicts). Then
        # (overwrite) every value changed in place, no key added or removed,
        # or (keep) those dicts kept past its end. Each next
        # request's scope must be as the first one's was.
        for part in KEPT_PARTS:
            part["leaked"] = True
        KEPT_PARTS.clear()
        report = repr(list(scope.items())).encode()
        if path == "/scope-overwrite":
            scope["extensions"]["http.response.pathsend"]["mine"] = True
            scope["state"]["mine"] = True
            scope["asgi"]["mine"] = True
            scope["headers"].append((b"mine", b"yes"))
            for key in scope:
                # (not http_version, which the response's head is written in)
                if key not in ("extensions", "state", "headers", "http_version"):
                    scope[key] = "mine"
        elif path == "/scope-keep":
            KEPT_PARTS[:] = [scope["asgi"], scope["state"], scope["extensions"]]
        await _respond(send, report)
    elif path == "/start-then-read":
        # A response begun before the request's body is read.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/version-rewrite":
        # The app rewrites its scope's http_version: its response is still
        # written in the request's (here 1.1, kept alive), by the C path or,
        # with headers it can read once only, by the Python one.
        scope["http_version"] = "1.0"
        made = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200,
                    "headers": iter(made) if scope["query_string"] == b"slow" else made})
        await send({"type": "http.response.body", "body": b"rewritten"})
    elif path == "/keep-methods":
        KEPT_METHODS[:] = [receive, send]
        await _respond(send, b"kept")
    elif path == "/kept-methods":
        # A request's receive and send, kept by the app, are still that
        # request's: after its end, send refuses and receive says
        # disconnect, and they are not the next request's.
        old_receive, old_send = KEPT_METHODS
        try:
            await old_send({"type": "http.response.body", "body": b"late"})
            late = "sent"
        except RuntimeError:
            late = "refused"
        gone = (await old_receive())["type"]
        await _respond(send, repr((old_receive is receive, old_send is send, late,
                                   gone)).encode())
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
