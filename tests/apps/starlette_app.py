"""A Starlette app for the tests, unmodified Starlette, served by uvicorn
(test_aio_apps.py) and by uringio's ASGI server (test_asgi.py): JSON in
and out, path and query parameters, a form upload, a streamed response, a
file response ($ASGI_TEST_FILE), a background task, a WebSocket echo, and
which event loop answered."""

import asyncio
import os

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

DONE: list[str] = []   # what background tasks finished, in this process


async def root(request):
    return PlainTextResponse("Hello, World!")


async def hello(request):
    loop = asyncio.get_running_loop()
    return JSONResponse({"hello": request.path_params["name"],
                         "loop": type(loop).__module__,
                         "backend": getattr(loop, "backend", None)})


async def stream(request):
    async def chunks():
        for i in range(100):
            yield b"%04d\n" % i
            await asyncio.sleep(0)
    return StreamingResponse(chunks(), media_type="text/plain")


async def double(request):
    doc = await request.json()
    return JSONResponse({"doubled": [2 * x for x in doc["numbers"]],
                         "scale": int(request.query_params.get("scale", "1"))})


async def upload(request):
    async with request.form() as form:
        data = await form["file"].read()
        return JSONResponse({"title": form["title"], "size": len(data)})


async def file(request):
    return FileResponse(os.environ["ASGI_TEST_FILE"])


async def background(request):
    tag = request.query_params["tag"]

    async def work():
        await asyncio.sleep(0.05)
        DONE.append(tag)
    return JSONResponse({"queued": tag}, background=BackgroundTask(work))


async def done(request):
    return JSONResponse({"done": DONE})


async def echo(ws):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


app = Starlette(routes=[Route("/", root), Route("/hello/{name}", hello),
                        Route("/stream", stream), Route("/double", double, methods=["POST"]),
                        Route("/upload", upload, methods=["POST"]), Route("/file", file),
                        Route("/background", background), Route("/done", done),
                        WebSocketRoute("/ws", echo)])
