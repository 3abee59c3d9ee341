"""WebSockets for ASGI apps: the ``websocket`` scope, after an HTTP/1.1
upgrade that ``HttpProtocol`` parsed and hands over.

The frames are wsproto's (RFC 6455 with permessage-deflate, when the
client offers it): it checks what the client sends -- a frame that is not
masked, a bad opcode, invalid UTF-8 in a text message -- and we answer its
verdict with the close code it names (1002, 1007, ...). What is ours:

* messages: fragments are joined, and a message over ``max_message``
  bytes closes the connection with 1009 before it is all buffered;
* pings are answered with pongs as they come;
* backpressure: ``send`` waits while the transport's buffer is over its
  high-water mark; ``receive`` waits for a message, and reading pauses
  while too many wait unread;
* the app refusing the handshake (``websocket.close`` before
  ``websocket.accept``) is an HTTP 403; raising before accepting is a 500,
  after accepting a close with 1011; returning without a close is a 1000.
"""

from __future__ import annotations

import asyncio
import base64
import http
import logging
import zlib
from collections import deque
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .flow import WriteFlow

log = logging.getLogger("uringio.asgi")

# Received messages the app has not taken, above which reading pauses.
QUEUE_HIGH_WATER = 16
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024


def _key_ok(key: bytes) -> bool:
    """Whether a Sec-WebSocket-Key is the base64 of 16 bytes."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:   # binascii.Error, not base64
        return False


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that inflates no message past ``max_message``.

    wsproto's inflates each piece of a frame whole before anyone can count
    the message: 64 KiB on the wire can be gigabytes in memory (a
    decompression bomb). Here each piece inflates at most what is left of
    the limit, plus one byte to tell "exactly the limit" from "more"; past
    it the connection closes with 1009 (wsproto closes with the reason an
    extension returns)."""

    def __init__(self, max_message: int) -> None:
        super().__init__()
        self.max_message = max_message
        self._inflated = 0   # of the message coming in

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        if self._inbound_compressed is None:   # a message begins
            self._inflated = 0
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto, data):
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data   # the protocol counts a message sent plain
        assert self._decompressor is not None
        try:
            out = self._decompressor.decompress(bytes(data),
                                                self.max_message - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._count(out)

    def frame_inbound_complete(self, proto, fin):
        out = super().frame_inbound_complete(proto, fin)
        return self._count(out) if isinstance(out, bytes) else out

    def _count(self, out: bytes) -> bytes | CloseReason:
        self._inflated += len(out)
        if self._inflated > self.max_message:
            return CloseReason.MESSAGE_TOO_BIG
        return out


class WebSocketProtocol(WriteFlow, asyncio.Protocol):
    """One upgraded connection: wsproto's frames, an ASGI app's messages."""

    def __init__(self, server, scope: dict, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.server = server
        self.scope = scope
        self.max_message = max_message
        self.loop = asyncio.get_running_loop()
        self.conn = WSConnection(ConnectionType.SERVER)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[dict] = deque()
        self.waiter: asyncio.Future | None = None
        self.fragments: list = []
        self.fragment_bytes = 0
        self.accepted = False
        self.closed = False        # a close was sent or received: no more messages
        self.lost = False
        self.init_flow()
        self.reading_paused = False
        self.handshake_done = False

    def start(self, transport, headers: list, raw_path: bytes, rest: bytes) -> None:
        """Take over ``transport`` from the HTTP protocol: the upgrade
        request was parsed there; ``rest`` is what came after its head."""
        self.transport = transport
        self.server.connections.add(self)
        keys = [value for name, value in headers if name == b"sec-websocket-key"]
        if len(keys) == 1 and not _key_ok(keys[0]):
            # RFC 6455 §4.2.1: the base64 of 16 bytes, which wsproto does not check.
            self._refuse_handshake(400, ValueError(f"Sec-WebSocket-Key {keys[0]!r}"))
            return
        try:
            self.conn.initiate_upgrade_connection(headers, raw_path)
        except (RemoteProtocolError, h11.ProtocolError, UnicodeDecodeError) as exc:
            # A handshake wsproto refuses (no key, another version), or its
            # h11 does (a value with a trailing space, which llhttp keeps), or
            # cannot read (bytes that are not ASCII in Sec-WebSocket-Protocol
            # or -Extensions: granian's CVE-2026-42544): the client's error,
            # answered and logged quietly.
            hint = getattr(exc, "event_hint", None)
            self._refuse_handshake(getattr(hint, "status_code", 400), exc)
            return
        self._handle_events()
        if rest:
            self.data_received(rest)

    # -- the transport --------------------------------------------------------

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if not self.closed:
            self.closed = True
            self._deliver({"type": "websocket.disconnect", "code": 1006})
        self.release_drain()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except LocalProtocolError:
            return   # after our close: nothing more is read
        self._handle_events()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(None)
        self._handle_events()
        return None

    def shutdown(self, retiring: bool = False) -> None:
        """The server is stopping (or this worker retiring): close with 1012
        (service restart)."""
        if self.accepted and not self.closed:
            self._close(1012, "server shutting down")
        elif self.transport is not None and not self.accepted:
            self.transport.close()

    # -- frames in ----------------------------------------------------------------

    def _handle_events(self) -> None:
        for event in self.conn.events():
            if isinstance(event, Request):
                self._start_app(event)
            elif isinstance(event, Message):
                self._on_message(event)
            elif isinstance(event, Ping):
                self._write(self.conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._on_close(event)
                return

    def _on_message(self, event: Message) -> None:
        if self.closed:
            return
        self.fragment_bytes += len(event.data)
        if self.fragment_bytes > self.max_message:
            self._close(1009, "message too big")
            return
        self.fragments.append(event.data)
        if not event.message_finished:
            return
        message: dict[str, Any]
        if isinstance(event, TextMessage):
            message = {"type": "websocket.receive", "text": "".join(self.fragments)}
        else:
            assert isinstance(event, BytesMessage)
            message = {"type": "websocket.receive", "bytes": b"".join(self.fragments)}
        self.fragments = []
        self.fragment_bytes = 0
        self._deliver(message)
        if len(self.queue) >= QUEUE_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _on_close(self, event: CloseConnection) -> None:
        # The client's close (answered, then the connection ends), or
        # wsproto's verdict on a bad frame (sent as our close).
        if self.conn.state is ConnectionState.REMOTE_CLOSING:
            self._write(self.conn.send(event.response()))
            self._end(event.code)
        elif self.conn.state is ConnectionState.OPEN:
            self._close(event.code, event.reason or "")
        else:
            self._end(event.code)

    def _end(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            self._deliver({"type": "websocket.disconnect", "code": code})
        if self.transport is not None:
            self.transport.close()

    def _close(self, code: int, reason: str) -> None:
        # Our close frame, then the end of the connection.
        if self.conn.state is ConnectionState.OPEN:
            try:
                self._write(self.conn.send(CloseConnection(code=code, reason=reason)))
            except LocalProtocolError:
                pass
        self._end(code)

    def _deliver(self, message: dict) -> None:
        self.queue.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.lost:
            self.transport.write(data)

    # -- the app --------------------------------------------------------------------

    def _start_app(self, event: Request) -> None:
        for offer in event.extensions:
            try:   # the parameters, parsed now as the accept would parse them
                PerMessageDeflate().accept(offer if isinstance(offer, str) else offer.name)
            except ValueError as exc:   # client_max_window_bits=abc
                log.debug("WebSocket handshake refused: %r: %s", offer, exc)
                self._reject(400)
                return
        self.scope["subprotocols"] = list(event.subprotocols)
        self.queue.append({"type": "websocket.connect"})
        self.server.spawn(self.loop, self._run())

    async def _run(self) -> None:
        try:
            await self.server.app(self.scope, self.receive, self.send)
        except Exception as exc:
            log.error("the ASGI app raised on websocket %s", self.scope["path"], exc_info=exc)
            if not self.accepted and not self.handshake_done:
                self._reject(500)
            elif not self.closed:
                self._close(1011, "internal error")
        else:
            if not self.accepted and not self.handshake_done:
                self._reject(403)
            elif not self.closed:
                self._close(1000, "")

    def _refuse_handshake(self, status: int, exc: Exception) -> None:
        """Answer a handshake wsproto could not take, in plain HTTP (its
        state is of no use now), and close."""
        log.debug("WebSocket handshake refused with %d: %s", status, exc)
        self.handshake_done = self.closed = True
        version = b"sec-websocket-version: 13\r\n" if status == 426 else b""
        body = b"%d\n" % status
        self._write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                    b"%sconnection: close\r\n\r\n%s" % (
                        status, http.HTTPStatus(status).phrase.encode(), len(body), version, body))
        assert self.transport is not None
        self.transport.close()

    def _reject(self, status: int) -> None:
        self.handshake_done = True
        body = b"%d\n" % status
        self._write(self.conn.send(RejectConnection(
            status_code=status, has_body=True,
            headers=[(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))])))
        self._write(self.conn.send(RejectData(data=body)))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def receive(self) -> dict:
        while not self.queue:
            if self.lost:
                return {"type": "websocket.disconnect", "code": 1006}
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        message = self.queue.popleft()
        if self.reading_paused and len(self.queue) < QUEUE_HIGH_WATER // 2 and not self.lost:
            self.reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return message

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if self.lost or (self.closed and kind != "websocket.close"):
            raise ConnectionResetError("the WebSocket is closed")   # ASGI: an OSError
        if not self.accepted and not self.handshake_done:
            if kind == "websocket.accept":
                self.accepted = self.handshake_done = True
                headers: Any = list(message.get("headers") or ())
                self._write(self.conn.send(AcceptConnection(
                    subprotocol=message.get("subprotocol"), extra_headers=headers,
                    extensions=[BoundedDeflate(self.max_message)])))
            elif kind == "websocket.close":
                self._reject(403)
            else:
                raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', "
                                   f"got {kind!r}")
            return
        if kind == "websocket.send":
            text = message.get("text")
            data = text if text is not None else message.get("bytes") or b""
            self._write(self.conn.send(Message(data=data)))
            await self.drain()
        elif kind == "websocket.close":
            if not self.closed:
                self._close(message.get("code", 1000), message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a websocket")
