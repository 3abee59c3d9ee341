"""An ASGI server on uringio: HTTP/1.1 and WebSockets (with lifespan) for
FastAPI, Starlette and any ASGI 3.0 app, on uringio's asyncio loop and so on
either backend.

    python -m uringio serve asgi main:app [--port 8000] [--backend uring|epoll]
    uringio.asgi.run(app, "127.0.0.1", 8000)            # as uvicorn.run
    await uringio.asgi.Server(uringio.asgi.Config(app)).serve()
"""

from .server import AppImportError, Config, Server, import_app, run, serve_asgi

__all__ = ["AppImportError", "Config", "Server", "import_app", "run", "serve_asgi"]
