"""TLS for a server: the ``ssl.SSLContext`` its options describe, as
uvicorn's ``--ssl-*`` options describe it (and gunicorn's), with ALPN
offering ``http/1.1``.

The ASGI server's record layer is ``uringio.aio.tls.TLSLayer``: OpenSSL
through Python's ``ssl`` memory BIOs, a few calls per request, on either
backend (docs/benchmarks.md has the figures against granian's TLS).
"""

from __future__ import annotations

import ssl

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
