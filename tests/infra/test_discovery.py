"""Service discovery against a real DNS server (dnslib's, on a loopback port): A records
balanced, SRV priority and weight, answers cached for their TTL and asked again after it,
a failing endpoint out of rotation for its cool-down, names that do not resolve, and static
endpoints. Time is a clock the tests move, never waited for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from storefront.infra.discovery import (
    PerEndpoint,
    ServiceDiscovery,
    ServiceUnresolvable,
    UnknownService,
    build_discovery,
)
from storefront.kit.endpoints import Endpoint
from storefront.settings import DiscoverySettings
from tests.support.dns import DnsServer, Zone


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def zone() -> Zone:
    return Zone(
        """
        api.svc.test.        30 IN A    192.0.2.1
        api.svc.test.        30 IN A    192.0.2.2
        api.svc.test.        30 IN A    192.0.2.3
        v6.svc.test.         30 IN AAAA 2001:db8::7
        _pay._tcp.svc.test.  30 IN SRV  10 3 9001 A.Svc.Test.
        _pay._tcp.svc.test.  30 IN SRV  10 1 9002 b.svc.test.
        _pay._tcp.svc.test.  30 IN SRV  20 5 9003 c.svc.test.
        a.SVC.test.          30 IN A    192.0.2.11
        b.svc.test.          30 IN A    192.0.2.12
        c.svc.test.          30 IN A    192.0.2.13
        text.svc.test.       30 IN TXT  "no addresses here"
        _off._tcp.svc.test.  30 IN SRV  0 0 0 .
        """
    )


@pytest.fixture
def server(zone: Zone) -> Iterator[DnsServer]:
    with DnsServer(zone) as dns:
        yield dns


@pytest.fixture
def clock() -> Clock:
    return Clock()


def discovery(
    server: DnsServer, clock: Clock, services: dict[str, Any], **options: Any
) -> ServiceDiscovery:
    settings = DiscoverySettings.model_validate(
        {"services": services, **server.settings, **options}
    )
    return build_discovery(settings, clock=clock)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def picks(resolver: ServiceDiscovery, service: str, count: int) -> Counter[Endpoint]:
    return Counter([await resolver.pick(service) for _ in range(count)])


async def test_a_records_take_equal_turns(server: DnsServer, clock: Clock) -> None:
    resolver = discovery(
        server, clock, {"payments": {"dns_name": "api.svc.test", "port": 8443, "scheme": "https"}}
    )
    counted = await picks(resolver, "payments", 9)
    assert {e.url: n for e, n in counted.items()} == {
        "https://192.0.2.1:8443": 3,
        "https://192.0.2.2:8443": 3,
        "https://192.0.2.3:8443": 3,
    }
    assert {e.server_name for e in counted} == {"api.svc.test"}  # for TLS and Host
    # one lookup served all nine picks (A and AAAA asked once each)
    assert server.zone.questions("api.svc.test", "A") == 1
    assert server.zone.questions("api.svc.test", "AAAA") == 1


async def test_aaaa_records_and_ipv6_urls(server: DnsServer, clock: Clock) -> None:
    resolver = discovery(
        server, clock, {"payments": {"dns_name": "v6.svc.test.", "port": 443, "scheme": "https"}}
    )
    endpoint = await resolver.pick("payments")
    assert endpoint.url == "https://[2001:db8::7]:443"


async def test_srv_best_priority_shared_by_weight_then_fail_over(
    server: DnsServer, clock: Clock
) -> None:
    resolver = discovery(server, clock, {"payments": {"srv": "_pay._tcp.svc.test"}})
    a = Endpoint("192.0.2.11", 9001, server_name="a.svc.test")
    b = Endpoint("192.0.2.12", 9002, server_name="b.svc.test")
    c = Endpoint("192.0.2.13", 9003, server_name="c.svc.test")
    assert await picks(resolver, "payments", 8) == Counter({a: 6, b: 2})  # weights 3:1
    resolver.report_failure("payments", a)
    assert await picks(resolver, "payments", 3) == Counter({b: 3})  # priority 10 still serves
    resolver.report_failure("payments", b)
    assert await picks(resolver, "payments", 2) == Counter({c: 2})  # then priority 20
    assert set(await resolver.endpoints("payments")) == {a, b, c}
    # the additional section gave every target's address (matched whatever the case)
    assert server.zone.questions("a.svc.test", "A") == 0


async def test_srv_targets_without_glue_are_looked_up(zone: Zone, clock: Clock) -> None:
    zone.glue = False  # the server sends no additional section: each target asked for
    with DnsServer(zone) as server:
        resolver = discovery(server, clock, {"mail": {"srv": "_pay._tcp.svc.test"}})
        assert (await resolver.pick("mail")).host == "192.0.2.11"
        assert zone.questions("a.svc.test", "A") == 1


async def test_a_large_answer_truncated_over_udp_is_read_over_tcp(clock: Clock) -> None:
    pods = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(120)]  # a big headless Service
    zone = Zone("\n".join(f"pods.svc.test. 30 IN A {ip}" for ip in pods))
    with DnsServer(zone, udp_limit=512) as server:
        resolver = discovery(server, clock, {"payments": {"dns_name": "pods.svc.test", "port": 80}})
        found = await resolver.endpoints("payments")
        assert sorted(e.host for e in found) == sorted(pods)
        assert zone.questions("pods.svc.test", "A") == 2  # UDP (truncated), then TCP


async def test_answers_are_cached_for_their_ttl_then_asked_again(
    server: DnsServer, clock: Clock
) -> None:
    resolver = discovery(server, clock, {"payments": {"dns_name": "api.svc.test", "port": 80}})
    before = set(await resolver.endpoints("payments"))
    server.zone.load("api.svc.test. 30 IN A 192.0.2.99")  # the service moved
    clock.advance(29)
    assert set(await resolver.endpoints("payments")) == before  # still within its TTL
    assert server.zone.questions("api.svc.test", "A") == 1
    clock.advance(2)
    assert await resolver.endpoints("payments") == (
        Endpoint("192.0.2.99", 80, server_name="api.svc.test"),
    )
    assert server.zone.questions("api.svc.test", "A") == 2


async def test_ttls_are_bounded(server: DnsServer, clock: Clock) -> None:
    server.zone.load(
        """
        zero.svc.test. 0 IN A 192.0.2.1
        long.svc.test. 86400 IN A 192.0.2.2
        """
    )
    resolver = discovery(
        server,
        clock,
        {
            "consul": {"dns_name": "zero.svc.test", "port": 80},
            "pinned": {"dns_name": "long.svc.test", "port": 80},
        },
        min_ttl_seconds=5,
        max_ttl_seconds=60,
    )
    for _ in range(3):  # TTL 0 is held for the minimum, not asked on every call
        await resolver.pick("consul")
        await resolver.pick("pinned")
    assert server.zone.questions("zero.svc.test", "A") == 1
    clock.advance(6)
    await resolver.pick("consul")
    assert server.zone.questions("zero.svc.test", "A") == 2
    clock.advance(55)  # a day's TTL is held for the maximum only
    await resolver.pick("pinned")
    assert server.zone.questions("long.svc.test", "A") == 2


async def test_a_failing_endpoint_is_ejected_and_returns_after_the_cool_down(
    server: DnsServer, clock: Clock
) -> None:
    resolver = discovery(
        server,
        clock,
        {"payments": {"dns_name": "api.svc.test", "port": 80}},
        cooldown_seconds=30,
    )
    ejections = sample("storefront_discovery_ejections_total", service="payments")
    down = await resolver.pick("payments")
    resolver.report_failure("payments", down)
    assert down not in await picks(resolver, "payments", 6)
    assert sample("storefront_discovery_ejections_total", service="payments") == ejections + 1
    assert sample("storefront_discovery_endpoints", service="payments", state="out") == 1
    assert sample("storefront_discovery_endpoints", service="payments", state="in_rotation") == 2
    clock.advance(29)
    assert down not in await picks(resolver, "payments", 6)
    clock.advance(1)
    assert (await picks(resolver, "payments", 6))[down] == 2  # back in turn
    assert sample("storefront_discovery_endpoints", service="payments", state="out") == 0
    # reported again, out again; report_success brings it back before the cool-down
    resolver.report_failure("payments", down)
    assert down not in await picks(resolver, "payments", 4)
    resolver.report_success("payments", down)
    assert (await picks(resolver, "payments", 3))[down] == 1


async def test_every_endpoint_ejected_tries_the_one_ejected_longest_ago(
    server: DnsServer, clock: Clock
) -> None:
    resolver = discovery(server, clock, {"payments": {"dns_name": "api.svc.test", "port": 80}})
    endpoints = await resolver.endpoints("payments")
    for endpoint in (endpoints[1], endpoints[0], endpoints[2]):
        resolver.report_failure("payments", endpoint)
        clock.advance(1)
    assert await resolver.pick("payments") == endpoints[1]
    resolver.report_failure("payments", endpoints[1])  # failed again: now the newest
    assert await resolver.pick("payments") == endpoints[0]


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"dns_name": "missing.svc.test", "port": 80}, "missing.svc.test does not exist"),
        ({"dns_name": "text.svc.test", "port": 80}, "has no A or AAAA records"),
        ({"srv": "_nope._tcp.svc.test"}, "_nope._tcp.svc.test does not exist (NXDOMAIN"),
        ({"srv": "_off._tcp.svc.test"}, "every SRV target is '.'"),
    ],
)
async def test_a_name_that_does_not_resolve_is_a_clear_error(
    server: DnsServer, clock: Clock, service: dict[str, Any], message: str
) -> None:
    resolver = discovery(server, clock, {"payments": service})
    with pytest.raises(ServiceUnresolvable) as raised:
        await resolver.pick("payments")
    assert message in str(raised.value)
    assert f"127.0.0.1 port {server.port}" in str(raised.value)  # which nameserver said so
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"]


async def test_records_without_addresses_are_reported(server: DnsServer, clock: Clock) -> None:
    server.zone.load("_pay._tcp.svc.test. 30 IN A 192.0.2.1")  # the name exists, no SRV
    resolver = discovery(server, clock, {"payments": {"srv": "_pay._tcp.svc.test"}})
    with pytest.raises(ServiceUnresolvable, match="has no SRV records"):
        await resolver.pick("payments")


async def test_a_failed_lookup_is_remembered_then_retried(server: DnsServer, clock: Clock) -> None:
    resolver = discovery(
        server, clock, {"payments": {"dns_name": "late.svc.test", "port": 80}}, retry_seconds=2
    )
    for _ in range(3):
        with pytest.raises(ServiceUnresolvable):
            await resolver.pick("payments")
    assert server.zone.questions("late.svc.test", "A") == 1  # not asked on every call
    server.zone.load("late.svc.test. 30 IN A 192.0.2.8")
    clock.advance(2)
    assert (await resolver.pick("payments")).host == "192.0.2.8"


async def test_the_last_answer_serves_while_dns_fails_then_expires(
    server: DnsServer, clock: Clock
) -> None:
    resolver = discovery(
        server,
        clock,
        {"payments": {"dns_name": "api.svc.test", "port": 80}},
        stale_seconds=100,
        retry_seconds=5,
    )

    def lookups(outcome: str) -> float:
        return sample("storefront_discovery_lookups_total", service="payments", outcome=outcome)

    ok, stale, failed = lookups("ok"), lookups("stale"), lookups("failed")
    known = set(await resolver.endpoints("payments"))
    assert lookups("ok") == ok + 1
    server.zone.failing = True  # SERVFAIL from now on
    clock.advance(31)
    assert await resolver.pick("payments") in known  # stale, but an answer
    assert lookups("stale") == stale + 1
    asked = server.zone.questions("api.svc.test", "A")
    assert asked >= 2
    clock.advance(4)
    await resolver.pick("payments")
    assert server.zone.questions("api.svc.test", "A") == asked  # retried only after 5 s
    clock.advance(100)
    with pytest.raises(ServiceUnresolvable, match="no nameserver answered"):
        await resolver.pick("payments")
    assert lookups("failed") == failed + 1
    server.zone.failing = False
    clock.advance(5)
    assert await resolver.pick("payments") in known


async def test_a_nameserver_that_does_not_answer_is_a_clear_error(clock: Clock) -> None:
    with DnsServer(Zone()) as stopped:
        port = stopped.port
    settings = DiscoverySettings.model_validate(
        {
            "services": {"payments": {"dns_name": "api.svc.test", "port": 80}},
            "nameservers": ["127.0.0.1"],
            "nameserver_port": port,
            "timeout_seconds": 0.5,
        }
    )
    resolver = build_discovery(settings, clock=clock)
    with pytest.raises(ServiceUnresolvable, match=f"127.0.0.1 port {port}"):
        await resolver.pick("payments")


async def test_static_endpoints_take_turns_and_are_ejected(clock: Clock) -> None:
    settings = DiscoverySettings.model_validate(
        {
            "services": {
                "payments": {"urls": "http://127.0.0.1:12111/v1, https://api.stripe.com"},
                "search": {"urls": ["search-1.internal", "[2001:db8::1]:9201"], "port": 9200},
            },
            "cooldown_seconds": 10,
        }
    )
    resolver = build_discovery(
        settings, defaults={"mail": ["smtp.internal:2525"], "payments": ["https://x.test"]}
    )
    first, second = await resolver.pick("payments"), await resolver.pick("payments")
    assert {first.url, second.url} == {"http://127.0.0.1:12111/v1", "https://api.stripe.com:443"}
    assert [str(e) for e in await resolver.endpoints("search")] == [
        "search-1.internal:9200",
        "[2001:db8::1]:9201",
    ]
    assert await resolver.pick("mail") == Endpoint("smtp.internal", 2525)  # the default
    resolver.report_failure("payments", first)
    assert await picks(resolver, "payments", 3) == Counter({second: 3})
    assert resolver.services == ("mail", "payments", "search")
    with pytest.raises(UnknownService, match="STOREFRONT_DISCOVERY__SERVICES__BILLING__URLS"):
        await resolver.pick("billing")


async def test_a_client_per_endpoint_for_sdks_built_with_their_address() -> None:
    settings = DiscoverySettings.model_validate(
        {"services": {"payments": {"urls": "http://127.0.0.1:12111,http://127.0.0.1:12112"}}}
    )
    built: list[str] = []

    def build(endpoint: Endpoint) -> str:
        built.append(endpoint.url)
        return f"client for {endpoint.url}"

    clients = PerEndpoint(build_discovery(settings).service("payments"), build)
    chosen = [await clients.pick() for _ in range(4)]
    assert [client for _, client in chosen] == [
        "client for http://127.0.0.1:12111",
        "client for http://127.0.0.1:12112",
    ] * 2
    assert built == ["http://127.0.0.1:12111", "http://127.0.0.1:12112"]  # built once each
    first, _ = chosen[0]
    clients.report_failure(first)
    assert {client for _, client in [await clients.pick() for _ in range(2)]} == {
        "client for http://127.0.0.1:12112"
    }
