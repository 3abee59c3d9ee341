"""A FastAPI app, unmodified, for uringio's ASGI server.

Run it:  python -m uringio serve asgi fastapi_app:app --app-dir examples --port 8000

(`--backend uring|epoll` as everywhere; `--model multi --workers 4` for a
worker per core.) Nothing here knows which server runs it.
"""

import asyncio

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel

# --8<-- [start:app]
app = FastAPI()


class Order(BaseModel):
    item: str
    quantity: int = 1


@app.get("/")
async def hello():
    return {"hello": "world", "loop": type(asyncio.get_running_loop()).__module__}


@app.get("/items/{item_id}")
async def item(item_id: int, detail: bool = False):
    return {"item_id": item_id, "detail": detail}


@app.post("/orders")
async def order(order: Order):
    return {"ordered": order.item, "quantity": order.quantity}


@app.websocket("/echo")
async def echo(ws: WebSocket):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)
# --8<-- [end:app]
