"""A Starlette app for uvicorn to serve in the tests: JSON, a path
parameter, a streamed response, and which event loop answered."""

import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


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


app = Starlette(routes=[Route("/", root), Route("/hello/{name}", hello),
                        Route("/stream", stream)])
