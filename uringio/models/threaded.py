"""The ``threads`` model: one OS thread per connection, blocking IO.

The design the event-driven models replaced, kept as a measured baseline:
no loop at all, each connection's thread blocks in recv() and send(). It
runs the same Protocol objects through a ThreadedConnection with the same
methods as Connection. Its cost is a thread (a stack, a scheduler entry) per
connection, and the GIL handing over between threads on every message.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl as _ssl
import threading
import time
from collections.abc import Callable
from typing import cast

from ..net.blocking import is_blocking
from ..net.connection import Connection, Protocol
from ..net.listeners import address_of, listen

log = logging.getLogger("uringio")

RECV_SIZE = 65536
ACCEPT_POLL = 0.2   # how often the accept loop looks at the stop flag


class ThreadedConnection:
    """Connection's interface over a blocking socket, used by one thread."""

    def __init__(self, sock: socket.socket, protocol: Protocol,
                 handshake_timeout: float | None = None) -> None:
        self.sock = sock
        self._handshake_timeout = handshake_timeout   # an SSLSocket's, in the thread
        self.fd = sock.fileno()
        self._protocol = protocol
        self._closing = False
        self._reading = threading.Event()
        self._reading.set()
        self._lock = threading.Lock()   # write() may come from a timer thread too

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def loop(self) -> _ThreadTimers:
        """No loop here: timers run in threads of their own."""
        return _THREAD_TIMERS

    @property
    def peername(self):
        return self.sock.getpeername()

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data) -> None:
        # Blocking send: a slow reader slows this thread, which is the
        # backpressure of this model.
        if self._closing:
            raise RuntimeError("write() after close()")
        with self._lock:
            self.sock.sendall(data)

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def sendfile(self, file, offset: int = 0, count: int | None = None, close: bool = False,
                 done=None, exclusive: bool = False, read_up_to: int = 0) -> None:
        """Connection.sendfile, blocking: sendfile(2) until all of it is sent."""
        result: object = None
        try:
            with self._lock:
                result = self.sock.sendfile(file, offset, count)
        except OSError as exc:
            result = exc
            raise
        finally:
            if close:
                file.close()
            if done is not None:
                done(result)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass   # sends block instead of buffering

    def write_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def close(self) -> None:
        """Writes are synchronous, so there is nothing left to flush."""
        if not self._closing:
            self._closing = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)   # wakes the recv()
            except OSError:
                pass

    abort = close

    def serve(self) -> None:
        """The connection's thread: receive until EOF, error or close."""
        protocol = self._protocol
        blocking_work = is_blocking(protocol.data_received)
        exc = None
        if isinstance(self.sock, _ssl.SSLSocket) and not self._handshake():
            return
        try:
            # Connection's interface, duck-typed over a blocking socket.
            protocol.connection_made(cast(Connection, self))
            while not self._closing:
                self._reading.wait()
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    if not self._closing and not protocol.eof_received():
                        break
                    continue
                if blocking_work:
                    # @blocking: the bytes to send back, or None.
                    work: Callable[[bytes], bytes | None] = protocol.data_received
                    result = work(data)
                    if result:
                        self.write(result)
                else:
                    protocol.data_received(data)
        except OSError as err:
            if not self._closing:
                exc = err
        finally:
            self._closing = True
            self.sock.close()
            protocol.connection_lost(exc)


    def _handshake(self) -> bool:
        # TLS: the handshake, in this connection's thread, within its time.
        try:
            self.sock.settimeout(self._handshake_timeout)
            cast(_ssl.SSLSocket, self.sock).do_handshake()
            self.sock.settimeout(None)
            return True
        except (OSError, ValueError) as exc:   # (ssl.SSLError and timeouts are OSErrors)
            log.debug("TLS handshake failed: %s", exc)
            self._closing = True
            self.sock.close()
            return False


class _ThreadTimers:
    """``time`` and ``call_later`` for protocols under the threads model."""

    time = staticmethod(time.monotonic)
    read_files_up_to = 0   # sendfile(2) is one call here too

    @staticmethod
    def call_later(delay: float, callback: Callable, *args) -> threading.Timer:
        timer = threading.Timer(delay, callback, args)
        timer.daemon = True
        timer.start()
        return timer


_THREAD_TIMERS = _ThreadTimers()


def run_threaded_server(protocol_factory: Callable[[], Protocol], host: str = "127.0.0.1",
                        port: int = 0, on_listening=None, drain_timeout: float = 5.0,
                        reuse_port: bool = False, sock: socket.socket | None = None,
                        ssl: _ssl.SSLContext | None = None,
                        handshake_timeout: float = 10.0) -> None:
    """Accept in this thread and serve each connection in a thread of its
    own, until SIGINT or SIGTERM; then close them and join their threads.
    ``sock``: a listening socket to serve instead of ``host``:``port``;
    ``ssl``: TLS on every connection, its handshake in the connection's
    thread."""
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set())
           for sig in (signal.SIGINT, signal.SIGTERM)}
    if sock is None:
        sock = listen(host, port, reuse_port=reuse_port)
    sock.settimeout(ACCEPT_POLL)
    conns: dict[threading.Thread, ThreadedConnection] = {}
    try:
        if on_listening is not None:
            on_listening(ThreadedServerInfo(sock))
        while not stop.is_set():
            try:
                client, _addr = sock.accept()
            except (TimeoutError, InterruptedError):
                continue
            except OSError as exc:   # EMFILE and friends: wait, as the loops do
                log.warning("accept failed (%s); pausing accepts for 0.1s", exc)
                time.sleep(0.1)
                continue
            client.settimeout(None)
            if ssl is not None:
                client = ssl.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
            conn = ThreadedConnection(client, protocol_factory(), handshake_timeout)
            thread = threading.Thread(target=conn.serve, daemon=True)
            conns[thread] = conn
            thread.start()
            for done in [t for t in conns if not t.is_alive()]:
                del conns[done]
    finally:
        sock.close()
        for conn in conns.values():
            conn.close()
        deadline = time.monotonic() + drain_timeout
        for thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sig, handler in old.items():
            signal.signal(sig, handler)


class ThreadedServerInfo:
    """What ``on_listening`` gets under the threads model."""

    backend = "blocking"   # plain blocking sockets: no loop, no readiness, no completions

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @property
    def address(self) -> tuple | str:
        return address_of(self.sock)
