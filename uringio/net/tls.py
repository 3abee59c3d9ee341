"""TLS for a server: the ``ssl.SSLContext`` its options describe, as
uvicorn's ``--ssl-*`` options describe it (and gunicorn's), with ALPN
offering ``http/1.1``; and the record layer, ``TLSLayer``.

``TLSLayer(context, protocol)`` is the protocol a listener makes; it speaks
TLS to the client through OpenSSL's memory BIOs (``ssl.SSLObject``) and
hands ``protocol`` the plaintext, giving it itself as its transport. Per
read: the ciphertext into the incoming BIO, the records out of
``SSLObject.read`` in one pass, ``protocol.data_received`` for each; per
write: ``SSLObject.write``, then what it encrypted out in one
``transport.write``. No queue, no state machine beyond the handshake: the
server answers requests it has read, so it never writes before the
handshake, and TLS 1.3's tickets and key updates are OpenSSL's, sent with
the next flush. It serves the ASGI server (an asyncio protocol on
``uringio.aio``'s transports) and ``serve http`` (a uringio ``Protocol`` on
a ``Connection``) alike, on either backend (docs/benchmarks.md has the
figures against granian's TLS).

What asyncio's ``sslproto`` does and this does not: client mode,
renegotiation (TLS 1.2 clients asking for one are refused by OpenSSL's
defaults for servers), ``start_tls``, and buffering of writes during the
handshake.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from collections import deque
from typing import Any

from .connection import Connection, Protocol, _QueuedFile

log = logging.getLogger("uringio")

# uvicorn's default cipher string: OpenSSL's "TLSv1" ciphers, whatever the
# version then negotiated (TLS 1.3's suites are not chosen by this string).
DEFAULT_CIPHERS = "TLSv1"


class TLSConfigError(ValueError):
    """The certificate, key, CA file or ciphers cannot be used."""


def server_context(certfile: str, keyfile: str | None = None, password: str | None = None,
                   ca_certs: str | None = None, cert_reqs: int = ssl.CERT_NONE,
                   ciphers: str = DEFAULT_CIPHERS) -> ssl.SSLContext:
    """A server-side context; ``cert_reqs`` CERT_OPTIONAL or CERT_REQUIRED
    asks clients for a certificate signed by ``ca_certs``. Raises
    TLSConfigError naming the file or option at fault."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot use --ssl-certfile {certfile}"
                             f"{f' with --ssl-keyfile {keyfile}' if keyfile else ''}: "
                             f"{exc.strerror or exc}") from None
    if cert_reqs not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
        raise TLSConfigError(f"--ssl-cert-reqs must be 0 (none), 1 (optional) or 2 "
                             f"(required), not {cert_reqs!r}")
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if ca_certs:
        try:
            context.load_verify_locations(ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot use --ssl-ca-certs {ca_certs}: "
                                 f"{exc.strerror or exc}") from None
    elif cert_reqs != ssl.CERT_NONE:
        raise TLSConfigError("--ssl-cert-reqs asks clients for a certificate: give "
                             "--ssl-ca-certs, the CA that signs them")
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"--ssl-ciphers {ciphers!r}: no cipher matches") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


log = logging.getLogger("uringio")

# Plaintext taken from OpenSSL per read() call: read() returns one
# record's at most, which holds 16 KiB at most; it allocates this much
# before it shrinks it to what it read.
READ_SIZE = 16 * 1024
# A file given to sendfile() is read and encrypted this much at a time, the
# next piece once the connection's send buffer is below its high water.
FILE_PIECE = 256 * 1024


class TLSLayer(asyncio.Protocol):
    """TLS between the connection's transport and ``protocol``, which gets
    this object as its transport once the handshake is done."""

    def __init__(self, context: ssl.SSLContext, protocol: asyncio.BaseProtocol | Protocol,
                 handshake_timeout: float = 60.0) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # The _ssl module's own object under ssl.SSLObject: its read, write
        # and pending, called directly, spare a Python frame of ssl.py's
        # each (three a request, a tenth of a TLS request's Python time).
        self._records = getattr(self._ssl, "_sslobj", self._ssl)
        self._protocol: Any = protocol
        self._transport: Any = None
        self._ready = False      # the handshake is done; the protocol has its transport
        self._closing = False
        self._eof_sent = False   # our close_notify and FIN are out: the rest is dropped
        self._handshake_timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None
        # While a file is being sent (sendfile): it and what came after it,
        # in order -- bytes, [file, bytes sent so far], or what close() or
        # write_eof() has left to do. None otherwise.
        self._queue: deque | None = None
        self._writing_paused = False   # the transport said pause_writing

    # -- the connection (the loop calls these) ----------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport
        # (a uringio Connection, which the asyncio loop's transports are too,
        # has the engine's timers; another transport, its asyncio loop's)
        loop = transport.loop if isinstance(transport, Connection) else asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._eof_sent:
            return   # a lingering close: read and dropped
        self._incoming.write(data)
        if not self._ready and not self._handshake():
            return
        protocol, incoming, records = self._protocol, self._incoming, self._records
        read = records.read
        while True:
            try:
                plain = read(READ_SIZE)
            except ssl.SSLWantReadError:
                break   # (a record not yet whole)
            except ssl.SSLZeroReturnError:   # the client's close_notify
                self._flush()
                if not protocol.eof_received():
                    self.close()
                return
            except ssl.SSLError as exc:
                self._fail(exc)
                return
            if not plain:
                break
            protocol.data_received(plain)
            if self._transport is None:
                return
            if not incoming.pending and not records.pending():
                break   # all read: no second read() to raise SSLWantReadError
        if self._outgoing.pending:
            self._flush()   # (a key update's, a ticket's answer)

    def eof_received(self) -> bool | None:
        if self._ready:
            return self._protocol.eof_received()
        return None

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None
        queue, self._queue = self._queue, None
        for entry in queue or ():
            if isinstance(entry, list):   # a file never sent whole: closed, its done() told
                entry[0].over(exc or ConnectionError("the connection closed before the file "
                                                     "was sent"))
        if self._ready:
            self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._ready:
            self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._queue:
            self._send_queue()
        if self._ready:
            self._protocol.resume_writing()

    # -- the handshake -------------------------------------------------------------

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()   # the alert that says why, if OpenSSL made one
            log.debug("TLS handshake failed: %s", exc)
            self._abort_quietly()
            return False
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ready = True
        self._protocol.connection_made(self)
        return self._transport is not None

    def _handshake_too_slow(self) -> None:
        self._timer = None
        if not self._ready:
            log.debug("TLS handshake not done in %.0f s: closing", self._handshake_timeout)
            self._abort_quietly()

    def _fail(self, exc: Exception) -> None:
        log.debug("TLS record error: %s", exc)
        self._abort_quietly()

    def _abort_quietly(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _flush(self) -> None:
        out = self._outgoing.read()
        if out and self._transport is not None:
            self._transport.write(out)

    # -- the transport the protocol writes to ----------------------------------------

    def write(self, data) -> None:
        if self._closing or self._transport is None:
            return
        if self._queue is not None:
            self._queue.append(bytes(data))   # behind a file being sent
            return
        self._encrypt(data)

    def _encrypt(self, data) -> None:
        try:
            self._records.write(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._transport.write(self._outgoing.read())

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def sendfile(self, file, offset: int = 0, count: int | None = None, close: bool = False,
                 done=None, read_up_to: int = 0) -> None:
        """``Connection.sendfile``'s, for ``serve http``'s static files: the
        file's bytes must pass through the record layer, so they are read
        (FILE_PIECE at a time, the next once the send buffer is below its
        high water) and encrypted, in order with the writes around them.
        (``read_up_to`` is Connection's choice between reading and
        splicing: here every file is read.)"""
        if self._closing or self._transport is None:
            raise RuntimeError("sendfile() after close()")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if self._queue is None:
            self._queue = deque()
        self._queue.append([_QueuedFile(file, offset, count, close, done, False, True), 0])
        if len(self._queue) == 1:
            self._send_queue()

    def _send_queue(self) -> None:
        # What the queue holds, in order, as far as the send buffer allows.
        queue = self._queue
        while queue and self._transport is not None and not self._writing_paused:
            entry = queue[0]
            if entry.__class__ is bytes:
                queue.popleft()
                self._encrypt(entry)
            elif isinstance(entry, list):
                item, sent = entry
                if sent == item.count:
                    queue.popleft()
                    item.over(sent)
                    continue
                piece = os.pread(item.file.fileno(), min(FILE_PIECE, item.count - sent),
                                 item.offset + sent)
                if not piece:   # shorter than promised: a response cut short must not look whole
                    queue.popleft()
                    error = OSError(errno.EIO, f"{item.file.name!r} held {sent} of the "
                                               f"{item.count} bytes to send")
                    item.over(error)
                    self._fail(error)
                    return
                entry[1] = sent + len(piece)
                self._encrypt(piece)
            else:
                queue.popleft()
                entry()   # a close() or write_eof() that waited for the file
        if self._queue is not None and not self._queue:
            self._queue = None

    def close(self) -> None:
        if self._closing or self._transport is None:
            return
        self._closing = True
        if self._queue is not None:
            self._queue.append(self._close_now)   # once the file before it is sent
        else:
            self._close_now()

    def _close_now(self) -> None:
        if not self._eof_sent:
            self._close_notify()
        self._transport.close()

    def _close_notify(self) -> None:
        try:
            self._ssl.unwrap()   # our close_notify (the client's is not waited for)
        except ssl.SSLError:
            pass
        self._flush()

    def abort(self) -> None:
        self._closing = True
        self._abort_quietly()

    @property
    def loop(self):
        """The engine loop of the Connection underneath (``serve http``'s
        protocols take their timers and clock from it)."""
        return self._transport.loop

    def is_closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Our close_notify, then the FIN; what the client still sends is
        read and dropped, its EOF reported (a lingering close, as a plain
        connection has: closing at once with the client's bytes unread
        would reset the connection, and the reset can lose our answer)."""
        if self._closing or self._eof_sent or self._transport is None:
            return
        if self._queue is not None:
            self._queue.append(self._write_eof_now)   # once the file before it is sent
        else:
            self._write_eof_now()

    def _write_eof_now(self) -> None:
        self._close_notify()
        self._eof_sent = True
        self._transport.write_eof()

    def get_extra_info(self, name: str, default=None):
        if name == "sslcontext":
            return self._ssl.context
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        if name == "compression":
            return self._ssl.compression()
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport is not None and self._transport.is_reading()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        if self._transport is not None:
            self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._transport.get_write_buffer_limits()

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol
