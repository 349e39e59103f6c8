"""The client's address: the TCP peer, or X-Forwarded-For only through trusted proxies.

Walk X-Forwarded-For from the right (nearest hop first), skipping every hop that is a
configured trusted proxy; the first untrusted hop is the client. A client that is not
behind a trusted proxy cannot move its address by sending the header itself; so a trusted
range must hold proxies only, and production refuses one as wide as the internet
(``too_wide``, decision 0187).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]  # an ASGI connection scope (starlette.types.Scope)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# address blocks that are never on the public internet (RFC 1918, shared address space,
# loopback, link-local, unique local): a proxy network inside one may be as wide as it likes
INTERNAL_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)
# the widest public network a proxy fleet needs: the largest of the published CDN ranges
# are /13 (Cloudflare's 104.16.0.0/13) and /29 (2a06:98c0::/29)
WIDEST_PUBLIC_PREFIX = {4: 12, 6: 24}
# how a dual-stack socket shows an IPv4 client (::ffff:203.0.113.9)
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def too_wide(network: Network) -> bool:
    """Whether trusting ``network`` trusts clients at large: a public network wider than
    ``WIDEST_PUBLIC_PREFIX`` (0.0.0.0/0, ::/0, 0.0.0.0/1...), or every IPv4-mapped address.
    Each client in it could choose its own address with X-Forwarded-For."""
    if isinstance(network, ipaddress.IPv6Network) and network.overlaps(IPV4_MAPPED):
        if not network.subnet_of(IPV4_MAPPED):
            return True  # holds all of ::ffff:0:0/96, so every IPv4 client
        mapped = int(network.network_address) & 0xFFFFFFFF
        network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    for internal in INTERNAL_NETWORKS:
        if internal.version == network.version and network.subnet_of(internal):  # type: ignore[arg-type]
            return False
    return network.prefixlen < WIDEST_PUBLIC_PREFIX[network.version]


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
