"""The echo protocol served by ``python -m uringio serve echo``."""

from .connection import Connection, Protocol


class EchoProtocol(Protocol):
    """Writes back every byte it receives, in order."""

    __slots__ = ("write",)

    def connection_made(self, conn: Connection) -> None:
        # Bind once: data_received is the per-message hot path.
        self.write = conn.write

    def data_received(self, data: bytes) -> None:
        self.write(data)
