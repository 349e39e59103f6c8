"""The client's address: the TCP peer, or X-Forwarded-For only through trusted proxies.

Walk X-Forwarded-For from the right (nearest hop first), skipping every hop that is a
configured trusted proxy; the first untrusted hop is the client. A client that is not
behind a trusted proxy cannot move its address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]  # an ASGI connection scope (starlette.types.Scope)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(",") if h.strip())
    return hops


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    for hop in reversed(_forwarded_for(scope)):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return str(peer)  # garbage from a hop we trust less than the proxy: ignore
    return str(peer)
