"""uringio: TCP servers on Linux io_uring (a Proactor), with an epoll Reactor
that runs the same code. Pick one with ``backend="uring" | "epoll" | "auto"``.

The package is built in layers, each a folder that imports only those
below it:

* ``uringio._core``: the engine -- the ring, the op table, the buffers, the
  two loops behind one ``Loop`` interface, and the choice between them;
* ``uringio.net``: ``Protocol``, ``Connection`` and ``Server``, uringio's own
  callback API on that interface;
* ``uringio.aio``: asyncio's event loop on the same interface, and files
  for asyncio code (``uringio.open_file``, ``uringio.files``);
* ``uringio.models``: the server models (single, pool, multi, threads);
* ``uringio.protocols``: the applications -- echo, HTTP/1.1, RESP, the
  TCP proxy;
* ``uringio.asgi``: the ASGI server (``uringio.serve_asgi``), on the
  asyncio loop and the multi model's workers;
* ``uringio.cli``: ``python -m uringio``.
"""

import sys

if not sys.platform.startswith("linux"):
    # One line instead of an error from deep inside: io_uring and epoll are Linux's.
    raise ImportError(f"uringio runs on Linux only (io_uring and epoll are Linux's); "
                      f"this is {sys.platform}")

from ._core import BACKENDS, BaseLoop, Loop, open_loop
from ._version import __version__ as __version__
from .errors import BusyResourceError, LoopClosedError, UringUnavailable
from .models import MODELS, run_server, serve
from .net import Connection, Protocol, Server, blocking, listen

# The asyncio loop is imported when first asked for: a program that uses
# only the callback API does not pay for it. ``EventLoopPolicy`` is made only when asked for by name
# (uringio.aio says why).
_AIO_NAMES = ("EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run")


def __getattr__(name: str):
    if name in _AIO_NAMES:
        from . import aio
        return getattr(aio, name)
    if name in ("files", "open_file"):
        from .aio import files
        return files if name == "files" else files.open_file
    if name == "serve_asgi":
        from .asgi import serve_asgi
        return serve_asgi
    raise AttributeError(f"module 'uringio' has no attribute {name!r}")


__all__ = [
    "BACKENDS", "BaseLoop", "BusyResourceError", "Connection", "EventLoop",
    "Loop", "LoopClosedError", "MODELS", "Protocol", "Server", "UringUnavailable", "blocking",
    "files", "install", "listen", "new_event_loop", "open_file", "open_loop", "run",
    "run_server", "serve", "serve_asgi",
]
if sys.version_info < (3, 14):
    # Not where asyncio's policies are deprecated (3.14) or gone (3.16):
    # ``from uringio import *`` must not make one there.
    __all__ += ["EventLoopPolicy"]
