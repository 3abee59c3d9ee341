"""uringio's own callback API on the completion interface: a ``Protocol``
per connection (asyncio's vocabulary), the ``Connection`` it writes to, and
the ``Server`` that accepts them, and where it listens (``listeners``)."""

from .blocking import blocking, is_blocking
from .connection import Connection, Protocol
from .listeners import Bind, listen
from .server import Server

__all__ = ["Bind", "Connection", "Protocol", "Server", "blocking", "is_blocking", "listen"]
