"""X-Forwarded-For and X-Forwarded-Proto, from the proxies the operator trusts.

Behind a reverse proxy every connection comes from the proxy, so the
client's address and scheme travel in headers. Anyone can write those
headers, so they count only on a connection from a trusted proxy
(``--forwarded-allow-ips``: addresses and networks, or ``*``), and only so
far as the chain of proxies is trusted: each proxy appends the address it
received the request from to X-Forwarded-For, so the entries are read from
the right, and the first that is not a trusted proxy is the client. The
leftmost entry is whatever the client chose to write (uvicorn's rule, and
nginx's ``real_ip_recursive``). X-Forwarded-Proto is the trusted peer's
word, taken only when it is one scheme that exists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_SCHEMES = {"http", "https", "ws", "wss"}


class TrustedProxies:
    """The addresses whose X-Forwarded-* headers count.

    Raises ValueError for an entry that is neither an IP address, a network
    (``10.0.0.0/8``) nor ``*``."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            if entry == "*":
                self.everyone = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"--forwarded-allow-ips: {entry!r} is not an IP address, "
                                 "a network (10.0.0.0/8) or *") from None

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False   # not an address (an obfuscated token, "unknown"): never trusted
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)


def forwarded(headers: Iterable[tuple[bytes, bytes]], client: tuple | None, scheme: str,
              trusted: TrustedProxies) -> tuple[tuple | None, str]:
    """The request's client and scheme, given the X-Forwarded-* headers that
    came on a connection from a trusted proxy."""
    hops: list[str] = []
    proto = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            hops += (hop.strip() for hop in value.decode("latin-1").split(","))
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
    hops = [hop for hop in hops if hop]
    if hops:
        if trusted.everyone:
            host = hops[0]
        else:
            # Past every trusted proxy from the right; if all of them are
            # trusted, the first is the client (it is a proxy we trust too).
            host = next((hop for hop in reversed(hops) if hop not in trusted), hops[0])
        client = (host, 0)
    if proto in _SCHEMES:
        scheme = "https" if proto == "wss" else "http" if proto == "ws" else proto
    return client, scheme
