"""The payment provider's resources: its SDK clients are opened from the discovered service
``payments`` (one client per endpoint, one HTTP session under them all) and closed with the
other resources; its guard's deadlines are the provider settings' timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from storefront.infra.stripe_client import StripeConnection
from storefront.resources import open_resources
from tests.conftest import make_settings

PAYMENTS = {"secret_key": "sk_test_resources", "timeout_seconds": 7, "connect_timeout_seconds": 2}


async def test_one_client_per_discovered_endpoint_closed_with_the_resources(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[StripeConnection] = []
    original = StripeConnection.aclose

    async def recording(self: StripeConnection) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(StripeConnection, "aclose", recording)
    settings = make_settings(
        sqlite_url,
        payments=PAYMENTS,
        discovery={
            "services": {"payments": {"urls": "http://127.0.0.1:12111, http://127.0.0.1:12112"}}
        },
    )
    async with open_resources(settings, role="cli") as resources:
        connection = resources.stripe
        assert connection is not None
        picks: dict[str, Any] = {}
        for _ in range(4):  # equal weights: the two endpoints take turns
            endpoint, client = await connection.clients.pick()
            assert picks.setdefault(endpoint.url, client) is client  # kept per endpoint
        assert set(picks) == {"http://127.0.0.1:12111", "http://127.0.0.1:12112"}
        first, second = picks.values()
        assert first is not second
        session = connection.http._session  # the one HTTP session under every client
        assert not session.closed
        policy = resources.resilience.policy("payments")
        assert (policy.timeout_seconds, policy.connect_timeout_seconds) == (7, 2)
        assert closed == []
    assert closed == [connection]
    assert session.closed


async def test_without_a_secret_key_there_is_no_provider_client(sqlite_url: str) -> None:
    async with open_resources(make_settings(sqlite_url), role="cli") as resources:
        assert resources.stripe is None
        # the provider's address is still a known service (the settings' default)
        assert (await resources.discovery.pick("payments")).url == "https://api.stripe.com:443"
