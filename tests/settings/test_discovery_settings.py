"""Service-discovery settings: read from STOREFRONT_DISCOVERY__*, one source per service,
refused with a message that names the mistake; operators' variable names are not flagged."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from storefront.kit.endpoints import Endpoint, parse_endpoint
from storefront.kit.startup import unknown_env_warnings
from storefront.settings import DiscoverySettings, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STOREFRONT_"):
            monkeypatch.delenv(name)


def test_services_and_nameservers_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "STOREFRONT_DISCOVERY__SERVICES__PAYMENTS__URLS": "http://10.0.0.5:12111, http://10.0.0.6",
        "STOREFRONT_DISCOVERY__SERVICES__MAIL__SRV": "_smtp._tcp.mail.shop.svc.cluster.local",
        "STOREFRONT_DISCOVERY__SERVICES__SEARCH__DNS_NAME": "search.service.consul",
        "STOREFRONT_DISCOVERY__SERVICES__SEARCH__PORT": "9200",
        "STOREFRONT_DISCOVERY__NAMESERVERS": "127.0.0.1, ::1",
        "STOREFRONT_DISCOVERY__NAMESERVER_PORT": "8600",
        "STOREFRONT_DISCOVERY__COOLDOWN_SECONDS": "12",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    discovery = Settings().discovery
    assert discovery.services["payments"].urls == ["http://10.0.0.5:12111", "http://10.0.0.6"]
    assert discovery.services["mail"].srv == "_smtp._tcp.mail.shop.svc.cluster.local"
    assert discovery.services["search"].dns_name == "search.service.consul"
    assert discovery.services["search"].port == 9200
    assert discovery.nameservers == ["127.0.0.1", "::1"]
    assert discovery.nameserver_port == 8600
    assert discovery.cooldown_seconds == 12
    assert not list(unknown_env_warnings(env, Settings))
    [warning] = unknown_env_warnings(
        {"STOREFRONT_DISCOVERY__SERVICES__PAYMENTS__URL": "http://x"}, Settings
    )
    assert "STOREFRONT_DISCOVERY__SERVICES__PAYMENTS__URL is not a Storefront setting" in warning


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ({"payments": {}}, "exactly one of URLS, DNS_NAME or SRV (got none)"),
        (
            {"payments": {"urls": "http://a:1", "srv": "_p._tcp.x.test"}},
            "exactly one of URLS, DNS_NAME or SRV (got URLS, SRV)",
        ),
        ({"payments": {"dns_name": "api.svc.test"}}, "needs a PORT"),
        ({"payments": {"dns_name": "bad name.test", "port": 1}}, "is not a DNS name"),
        ({"payments": {"srv": "payments.svc.test"}}, "must read _service._proto.name"),
        ({"payments": {"dns_name": "10.0.0.5", "port": 80}}, "list it in URLS instead"),
        ({"payments": {"urls": "mail.internal"}}, "has no port"),
        ({"payments": {"urls": "ftp://files.test"}}, "scheme must be one of"),
        ({"payments": {"urls": "http://user:pw@api.test"}}, "no credentials"),
        ({"payments": {"urls": "api.test:99999"}}, "not a number from 1 to 65535"),
        ({"Payments": {"urls": "api.test:1"}}, "service name 'Payments'"),
    ],
)
def test_a_bad_service_is_refused_with_a_clear_message(
    services: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        DiscoverySettings.model_validate({"services": services})
    assert message in str(raised.value)


def test_nameservers_are_addresses_and_ttl_bounds_are_ordered() -> None:
    with pytest.raises(ValidationError, match="must be an IP address"):
        DiscoverySettings.model_validate({"nameservers": "consul.local"})
    with pytest.raises(ValidationError, match="min_ttl_seconds must not exceed max_ttl_seconds"):
        DiscoverySettings(min_ttl_seconds=60, max_ttl_seconds=30)


def test_endpoint_forms() -> None:
    assert parse_endpoint("https://api.stripe.com") == Endpoint("api.stripe.com", 443, "https")
    assert parse_endpoint("http://127.0.0.1:12111/v1/").url == "http://127.0.0.1:12111/v1"
    assert parse_endpoint("[2001:db8::1]:25") == Endpoint("2001:db8::1", 25)
    assert parse_endpoint("mail.internal", default_port=2525).netloc == "mail.internal:2525"
    with pytest.raises(ValueError, match="has no scheme"):
        _ = Endpoint("mail.internal", 25).url
