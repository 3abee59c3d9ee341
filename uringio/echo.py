"""The echo protocol served by ``python -m uringio serve echo``."""

from .connection import Connection, Protocol


class EchoProtocol(Protocol):
    """Writes back every byte it receives, in order."""

    __slots__ = ("conn", "write")

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn
        # Bind once: data_received is the per-message hot path.
        self.write = conn.write

    def data_received(self, data: bytes) -> None:
        self.write(data)

    # A peer that sends faster than it reads would otherwise grow our write
    # buffer without bound: stop reading until it catches up.
    def pause_writing(self) -> None:
        self.conn.pause_reading()

    def resume_writing(self) -> None:
        self.conn.resume_reading()
