from __future__ import annotations

import pytest

from storefront.kit.client_address import client_address, parse_networks, too_wide

TRUSTED = parse_networks(["10.0.0.0/8", "::1"])


def scope(peer: str, *xff: str) -> dict[str, object]:
    return {
        "client": (peer, 1234),
        "headers": [(b"x-forwarded-for", v.encode()) for v in xff],
    }


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        # an untrusted peer cannot choose its address by sending the header
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # through a trusted proxy: the nearest untrusted hop is the client
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        # only trusted hops: the peer itself
        ("10.1.2.3", ["10.2.2.2"], "10.1.2.3"),
        # garbage in the header from a trusted hop is ignored
        ("10.1.2.3", ["not-an-ip"], "10.1.2.3"),
    ],
)
def test_client_address(peer: str, xff: list[str], expected: str) -> None:
    assert client_address(scope(peer, *xff), TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer_always() -> None:
    assert client_address(scope("10.1.2.3", "198.51.100.1"), ()) == "10.1.2.3"


def test_parse_networks_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        parse_networks(["10.0.0.0/8", "nope"])


@pytest.mark.parametrize(
    ("network", "wide"),
    [
        ("0.0.0.0/0", True),
        ("::/0", True),
        ("0.0.0.0/1", True),  # from 0.0.0.0 to 127.255.255.255: both ends are "private"
        ("::/64", True),  # holds ::ffff:0:0/96, so every IPv4 client of a dual-stack socket
        ("::ffff:0:0/97", True),  # half of IPv4, written as IPv6
        ("11.0.0.0/11", True),
        ("11.0.0.0/12", False),
        ("2a00::/23", True),
        ("2a00::/24", False),
        ("10.0.0.0/8", False),
        ("fc00::/7", False),
        ("100.64.0.0/10", False),
        ("::ffff:10.0.0.0/104", False),
        ("198.51.100.7", False),
    ],
)
def test_too_wide(network: str, wide: bool) -> None:
    (parsed,) = parse_networks([network])
    assert too_wide(parsed) is wide
