"""uringio's own callback API on the completion interface: a ``Protocol``
per connection (asyncio's vocabulary), the ``Connection`` it writes to, and
the ``Server`` that accepts them."""

from .blocking import blocking, is_blocking
from .connection import Connection, Protocol
from .server import Server, listen

__all__ = ["Connection", "Protocol", "Server", "blocking", "is_blocking", "listen"]
