"""A FastAPI app for uringio's ASGI server in the tests, unmodified
FastAPI: JSON in and out, path and query parameters, a form upload, a
streamed response, a file response, a background task, a WebSocket echo,
a sync route (run in a worker thread by anyio), anyio cancel scopes, and
a lifespan that writes each startup and shutdown to $LIFESPAN_LOG."""

import asyncio
import os
import threading
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import BackgroundTasks, FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel

DONE: list[str] = []   # what background tasks finished, in this worker


def _log(event: str) -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{event} {os.getpid()}\n")


@asynccontextmanager
async def lifespan(app):
    _log("startup")
    yield {"started_by": os.getpid()}
    _log("shutdown")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/")
async def root():
    return PlainTextResponse("Hello, World!")


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "total": item.price * 2, "tags": item.tags}


@app.post("/upload")
async def upload(title: Annotated[str, Form()], file: Annotated[UploadFile, File()]):
    data = await file.read()
    return {"title": title, "filename": file.filename, "size": len(data),
            "sum": sum(data) % 65536}


@app.get("/stream")
async def stream():
    async def chunks():
        for i in range(100):
            yield b"%04d\n" % i
            await asyncio.sleep(0)
    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/file")
async def file():
    return FileResponse(os.environ["ASGI_TEST_FILE"])


@app.get("/background")
async def background(tasks: BackgroundTasks, tag: str):
    async def work():
        await asyncio.sleep(0.05)
        DONE.append(tag)
    tasks.add_task(work)
    return {"queued": tag}


@app.get("/done")
async def done():
    return {"done": DONE}


@app.get("/slow")
async def slow(seconds: float = 1.0):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


HELD: list[str] = []   # the /hold requests begun, in this worker


@app.get("/hold")
async def hold(release: str):
    # In flight for as long as a test wants: until the file ``release`` exists.
    HELD.append(release)
    while not os.path.exists(release):
        await asyncio.sleep(0.01)
    return {"released": release}


@app.get("/held")
async def held():
    return {"held": HELD}


@app.get("/sync")
def sync_route(n: int = 1):
    # A plain def: FastAPI runs it in anyio's worker threads.
    return {"n": n, "in_a_thread": threading.current_thread() is not threading.main_thread()}


@app.get("/deadline")
async def deadline(seconds: float = 0.01):
    # An anyio cancel scope entered before the first wait and left after
    # it, in the same task (seconds=0: cancelled before anything waits).
    with anyio.move_on_after(seconds) as scope:
        await asyncio.sleep(10)
    return {"cancelled": scope.cancelled_caught}


@app.get("/state")
async def state(request: Request):
    return {"started_by": request.state.started_by, "pid": os.getpid()}


@app.get("/boom")
async def boom():
    raise RuntimeError("boom")


@app.websocket("/ws-refused")
async def refused(ws: WebSocket):
    await ws.close()   # before accepting: the handshake is refused


@app.websocket("/ws")
async def echo(ws: WebSocket):
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])
