"""The applications ``python -m uringio serve APP`` runs."""

import os
import time

from ..net.blocking import blocking
from ..net.connection import Connection, Protocol


class EchoProtocol(Protocol):
    """Writes back every byte it receives, in order."""

    __slots__ = ("conn",)

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn.write(data)

    # A peer that sends faster than it reads would otherwise grow our write
    # buffer without bound: stop reading until it catches up.
    def pause_writing(self) -> None:
        self.conn.pause_reading()

    def resume_writing(self) -> None:
        self.conn.resume_reading()


def blocking_echo(work_ms: float) -> type:
    """An echo protocol whose every chunk costs ``work_ms`` of blocking work
    (a sleep, like a database call), to show what each model does with it."""

    class BlockingEcho(EchoProtocol):
        @blocking
        def data_received(self, data: bytes) -> bytes:
            time.sleep(work_ms / 1000)
            return data

    return BlockingEcho


class WhoAmIProtocol(Protocol):
    """Answers every chunk with the serving process's pid, ``b"<pid>\\n"``:
    shows which worker of the multi model took a connection."""

    def connection_made(self, conn: Connection) -> None:
        self.reply = b"%d\n" % os.getpid()
        self.write = conn.write

    def data_received(self, data: bytes) -> None:
        self.write(self.reply)


APPS = {"echo": EchoProtocol, "whoami": WhoAmIProtocol}
