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
import logging
import ssl
from typing import Any

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

# Plaintext taken from OpenSSL per read() call: a record holds 16 KiB at
# most, and read() allocates this much before it shrinks it to what it
# read (a size past malloc's mmap threshold would be an mmap per call).
READ_SIZE = 64 * 1024


class TLSLayer(asyncio.Protocol):
    """TLS between the connection's transport and ``protocol``, which gets
    this object as its transport once the handshake is done."""

    def __init__(self, context: ssl.SSLContext, protocol: asyncio.BaseProtocol,
                 handshake_timeout: float = 60.0) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._protocol: Any = protocol
        self._transport: Any = None
        self._ready = False      # the handshake is done; the protocol has its transport
        self._closing = False
        self._handshake_timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None

    # -- the connection (the loop calls these) ----------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_too_slow)

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self._ready and not self._handshake():
            return
        protocol, read, incoming, sslobj = self._protocol, self._ssl.read, self._incoming, self._ssl
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
            if not incoming.pending and not sslobj.pending():
                break   # all read: no second read() to raise SSLWantReadError
        self._flush()   # (a key update's, a ticket's answer)

    def eof_received(self) -> bool | None:
        if self._ready:
            return self._protocol.eof_received()
        return None

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None
        if self._ready:
            self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._ready:
            self._protocol.pause_writing()

    def resume_writing(self) -> None:
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
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._transport.write(self._outgoing.read())

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        if self._closing or self._transport is None:
            return
        self._closing = True
        try:
            self._ssl.unwrap()   # our close_notify (the client's is not waited for)
        except ssl.SSLError:
            pass
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._closing = True
        self._abort_quietly()

    def is_closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()

    def can_write_eof(self) -> bool:
        return False   # TLS has no half-close: close_notify ends both ways

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot close one direction")

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
