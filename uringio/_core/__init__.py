"""The engine: what every layer above runs on, and nothing else.

``ring`` (one ``struct io_uring``), ``ops`` (the in-flight operation table),
``buffers`` (pinning, the provided-buffer ring), ``loop`` (callbacks, timers,
the turn both loops share), ``proactor`` (backend "uring") and ``reactor``
(backend "epoll"), both implementing ``interface.Loop``, and ``backend``
(``open_loop``: the one module that knows both). Private: the layers above
use what this package exports.
"""

from .backend import BACKENDS, open_loop
from .interface import Loop, SendStream
from .loop import BaseLoop

__all__ = ["BACKENDS", "BaseLoop", "Loop", "SendStream", "open_loop"]
