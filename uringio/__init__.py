"""uringio: TCP servers on Linux io_uring (a Proactor), with an epoll Reactor
that runs the same code. Pick one with ``backend="uring" | "epoll" | "auto"``."""

from .connection import Connection, Protocol
from .errors import BusyResourceError, LoopClosedError, UringUnavailable
from .loop import BACKENDS, BaseLoop, open_loop
from .models import MODELS, serve
from .pool import blocking
from .server import Server, listen, run_server

__all__ = [
    "BACKENDS", "BaseLoop", "BusyResourceError", "Connection", "LoopClosedError", "MODELS",
    "Protocol", "Server", "UringUnavailable", "blocking", "listen", "open_loop", "run_server",
    "serve",
]
__version__ = "0.1.0"
