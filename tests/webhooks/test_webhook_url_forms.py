"""Webhook URLs whose host is a non-public address written the way a resolver reads it
(inet_aton forms: ``2130706433``, ``0x7f000001``, ``127.1``, ``0177.0.0.1``, ``0``), a
local name (``localhost.``, ``foo.localhost``), or an IPv6 literal carrying such an address
are refused at creation with a 422 problem, by the classification delivery uses; nothing is
stored. Before, creation only knew dotted-quad literals and ``localhost``."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from sqlalchemy import func, select

from storefront.infra.outbound import OutboundRefused, check_url, host_address
from storefront.resources import Resources
from storefront.webhooks.models import WebhookEndpoint
from tests.support.factories import V1, Api
from tests.support.problems import assert_problem

REFUSED_HOSTS = [
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f000001",  # ... as one hexadecimal number
    "0x7F.1",
    "127.1",  # a.b: the last part fills three bytes
    "127.0.1",
    "0177.0.0.1",  # octal 0177 = 127
    "0",  # 0.0.0.0: this host
    "127.0.0.1.",  # a trailing dot
    "10.1",  # 10.0.0.1: private
    "0xa9fea9fe",  # 169.254.169.254: the cloud metadata service
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits: IDNA maps them to 127.0.0.1
    "localhost.",
    "LocalHost",
    "foo.localhost",
    "foo.localhost.",
    "printer.local",
    "metadata.google.internal",
    "intranet",  # one label: completed by the resolver's search domains
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::127.0.0.1]",  # IPv4-compatible
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[fe80::1%25eth0]",  # link-local with a zone
    "[127.0.0.1]",  # not an IPv6 address (was a 500: urlsplit raised ValueError)
    "1.2.3.4.5",  # ends in a number but is no address
    "256.0.0.1",
    "foo.0x10",
    "%31%32%37.0.0.1",  # percent-encoded: not a host name
    "hooks.example.com:0",  # port 0: nothing can be called there (once accepted)
]


async def _endpoints(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        count = select(func.count()).select_from(WebhookEndpoint)
        return int((await session.execute(count)).scalar_one())


async def _subscribe(api: Api, url: str) -> Any:
    owner = await api.user()
    shop = await api.shop(owner)
    return await api.client.post(
        f"{V1}/shops/{shop['id']}/webhooks",
        json={"url": url, "events": ["order.placed"]},
        headers=owner.auth,
    )


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_a_non_public_host_in_any_form_is_refused_at_creation(
    api: Api, resources: Resources, host: str
) -> None:
    r = await _subscribe(api, f"https://{host}/hooks")
    assert_problem(r, 422, slug="webhook-url-refused")
    assert await _endpoints(resources) == 0


@pytest.mark.parametrize(
    "host", ["hooks.example.com", "hooks.example.com.", "0x08080808", "[2001:4860:4860::8888]"]
)
async def test_public_hosts_are_still_accepted(api: Api, resources: Resources, host: str) -> None:
    r = await _subscribe(api, f"https://{host}/hooks")
    assert r.status_code == 201, r.text
    assert await _endpoints(resources) == 1


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "0", "0x7F.0.0.1", "10.1.2"]
)
def test_numeric_hosts_read_as_the_system_resolver_reads_them(host: str) -> None:
    # libc's inet_aton is what getaddrinfo uses for a numeric host, before any DNS lookup
    assert host_address(host) == ipaddress.IPv4Address(socket.inet_aton(host))


def test_delivery_refuses_the_same_urls_with_the_same_function() -> None:
    # OutboundClient.post checks every URL with check_url before connecting; creation too
    for host in REFUSED_HOSTS:
        with pytest.raises(OutboundRefused):
            check_url(f"https://{host}/hooks", allow_private=False, allow_http=False)
