"""An ASGI server on uringio: HTTP/1.1 and WebSockets (with lifespan) for
FastAPI, Starlette and any ASGI 3.0 app, on uringio's asyncio loop and so on
either backend.

    python -m uringio serve asgi main:app --port 8000 [--backend uring|epoll]
    uringio.serve_asgi(app, "127.0.0.1", 8000)
"""

from .server import AppImportError, import_app, serve_asgi

__all__ = ["AppImportError", "import_app", "serve_asgi"]
