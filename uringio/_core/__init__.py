"""The engine: what every layer above runs on, and nothing else.

The two backends side by side, each a package of modules with the same
names for the same concepts -- ``loop``, ``send_stream``, ``files``,
``relay`` -- so that reading one beside the other shows completion against
readiness:

* ``uring/``: ``ProactorLoop`` (backend "uring"), and what only it has:
  ``ring``, ``ops``, ``buffers``;
* ``epoll/``: ``ReactorLoop`` (backend "epoll").

What both share is here: ``interface`` (``Loop`` and ``SendStream``, each
operation documented once), ``loop`` (callbacks, timers, the turn both
loops share: ``BaseLoop``), ``files`` and ``relay`` (what the two halves of
each have in common), and ``backend`` (``open_loop``: the one module that
imports both backends). The compiled modules sit here too: ``_liburing``
(the cffi binding, used by ``uring/`` only) and ``_fastpath`` (the C
dispatcher and send streams of ``uring/``, and ``Connection.write``'s C
path, which serves both).

The layers above use what this package exports, and the shared modules'
names for the sync flags and the relay's chunk (``files.SYNC_*``,
``relay.PIPE_CHUNK``); ``cli.info`` reads the ring's probe.
"""

from .backend import BACKENDS, open_loop
from .interface import Loop, SendStream
from .loop import BaseLoop

__all__ = ["BACKENDS", "BaseLoop", "Loop", "SendStream", "open_loop"]
