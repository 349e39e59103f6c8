from __future__ import annotations

import pytest

from storefront.kit.client_address import client_address, parse_networks

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
