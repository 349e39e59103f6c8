"""Paying through the seams, against the real localstripe emulator behind a fault-injecting
proxy, on SQLite and PostgreSQL: the provider's circuit breaker opens after resets, then
POST .../payments answers 503 at once with nothing reaching the provider and the order still
payable, and the half-open probe closes it again; a hung provider fills the bulkhead and the
extra call is refused; of two discovered endpoints one is dead and payments still work (it
is ejected after its first failure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from prometheus_client import REGISTRY

from storefront.infra.discovery import build_discovery
from storefront.infra.stripe_client import build_stripe
from storefront.kit.db import new_id, utcnow
from storefront.payments.provider import ProviderDeclined, ProviderUnavailable, StripeProvider
from storefront.payments.tasks import reconcile
from storefront.resilience import Resilience
from storefront.resources import Resources
from storefront.sales import SALES_PROJECTION
from storefront.settings import DiscoverySettings, PaymentsSettings, ResilienceSettings, Settings
from tests.conftest import hardened_overrides, make_settings
from tests.support.apps import running_app
from tests.support.events import eventually, relayed_and_consumed
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.faults import Fault, FaultProxy
from tests.support.orders import order_status_in_db
from tests.support.payments import pay, payments_in_db
from tests.support.problems import assert_problem
from tests.support.servers import LocalStripe, free_port

DEADLINE_SECONDS = 60.0  # generous: a loaded 2-core machine


def _settings(
    database_url: str, backend: str, payments: dict[str, Any], **overrides: Any
) -> Settings:
    extra = hardened_overrides() if backend == "postgres" else {}
    return make_settings(database_url, payments=payments, **extra, **overrides)


def _resilience(**payments: Any) -> dict[str, Any]:
    """STOREFRONT_RESILIENCE__* with the payments dependency's own overrides."""
    return {
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "dependencies": {"payments": payments},
    }


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[Api, Resources]]:
    async with running_app(settings) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield Api(c, resources), resources
        # the order events the test caused are consumed before the tables are emptied: one
        # delivered afterwards would leave a sales row in the shared database
        await eventually(
            lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
            bool,
            what="events relayed and consumed",
        )


async def _orders(api: Api, count: int) -> tuple[dict[str, Any], list[tuple[UserHandle, str]]]:
    """A shop and ``count`` pending orders, each of a customer of its own."""
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=700, stock=20, currency="EUR")
    orders = []
    for _ in range(count):
        customer = await api.user()
        orders.append((customer, (await api.order(customer, shop, (product, 1)))["id"]))
    return shop, orders


async def _refused_and_written_off(
    r: httpx2.Response, resources: Resources, order_id: str, reason: str
) -> None:
    """A 503 refusal before anything was sent: the attempt is failed (not_sent), the order
    still pending and payable."""
    problem = assert_problem(r, 503)
    assert problem["type"].endswith("/dependency-unavailable")
    assert problem["dependency"] == "payments"
    assert problem["reason"] == reason
    assert int(r.headers["retry-after"]) >= 1
    attempts = await payments_in_db(resources, order_id)
    assert attempts, "the refused attempt is on record"
    assert all(p.status.value == "failed" for p in attempts)
    assert attempts[-1].failure_code == "not_sent"
    assert await order_status_in_db(resources, order_id) == "pending"


@pytest.fixture
async def proxy(localstripe: LocalStripe) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", localstripe.port) as proxy:
        yield proxy


@asynccontextmanager
async def _provider(api_base: str, **resilience: Any) -> AsyncIterator[StripeProvider]:
    """The adapter on its own: the provider at ``api_base`` (the discovered service's
    static default) under a Resilience of its own."""
    settings = PaymentsSettings(api_base=api_base, secret_key=LocalStripe.SECRET_KEY)
    discovery = build_discovery(DiscoverySettings(), defaults={"payments": [api_base]})
    connection = build_stripe(settings, discovery.service("payments"))
    assert connection is not None
    values = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05, **resilience}
    try:
        yield StripeProvider(connection, Resilience(ResilienceSettings(**values), redis=None))
    finally:
        await connection.aclose()


async def _charge(provider: StripeProvider, payment_method: str = "pm_card_visa") -> None:
    await provider.create_and_confirm(
        payment_id=new_id(),
        order_id=new_id(),
        shop_id=new_id(),
        amount_cents=500,
        currency="EUR",
        payment_method=payment_method,
    )


async def test_reads_are_retried_a_charge_that_may_have_arrived_is_not(
    proxy: FaultProxy,
) -> None:
    async with _provider(f"http://{proxy.address}", failure_threshold=2) as provider:
        # declines are answers: the circuit stays closed however many there are
        for _ in range(3):
            with pytest.raises(ProviderDeclined):
                await _charge(provider, "pm_card_chargeCustomerFail")
        assert provider.resilience.breakers.state("payments") == "closed"

        await proxy.set(Fault.RESET)  # connections accepted, then reset: the request left
        for opened in (False, True):
            before = proxy.accepted
            with pytest.raises(ProviderUnavailable) as reset:
                await _charge(provider)
            assert reset.value.reached
            assert proxy.accepted == before + 1  # the charge: once, never again blindly
            state = provider.resilience.breakers.state("payments")
            assert state == ("opened" if opened else "closed")

    async with _provider(
        f"http://{proxy.address}", failure_threshold=20, retry_attempts=3
    ) as provider:
        retries = _sample("storefront_dependency_retries_total", dependency="payments")
        with pytest.raises(ProviderUnavailable):
            await provider.retrieve("pi_anything")
        # a read: every attempt (each of them may open more than one connection: the HTTP
        # client itself tries a GET again on a fresh connection)
        assert _sample("storefront_dependency_retries_total", dependency="payments") == (
            retries + 2
        )

        await proxy.set(Fault.REFUSE)  # no connection opens: nothing can have been sent
        with pytest.raises(ProviderUnavailable) as refused:
            await _charge(provider)  # (tried on the next endpoint: here the same one)
        assert not refused.value.reached
    await proxy.set(Fault.NONE)


async def test_resets_open_the_circuit_an_open_circuit_answers_503_and_a_probe_closes_it(
    database_url: str, backend: str, localstripe: LocalStripe, proxy: FaultProxy
) -> None:
    settings = _settings(
        database_url,
        backend,
        localstripe.settings(f"http://{proxy.address}"),
        resilience=_resilience(failure_threshold=2, cool_down_seconds=1.0),
    )
    async with _serving(settings) as (api, resources):
        shop, orders = await _orders(api, 3)
        await proxy.set(Fault.RESET)
        for customer, order_id in orders[:2]:
            # the request may have reached the provider: unknown, never charged again blindly
            before = proxy.accepted
            r = await pay(api, customer, shop, order_id)
            assert r.status_code == 504, r.text
            assert proxy.accepted == before + 1
        assert resources.resilience.breakers.state("payments") == "opened"

        # open: refused at once, no connection reaches the proxy, the order stays payable
        customer, order_id = orders[2]
        reached = proxy.accepted
        r = await pay(api, customer, shop, order_id)
        await _refused_and_written_off(r, resources, order_id, "circuit-open")
        assert proxy.accepted == reached
        # reconciliation is refused too: it stops, and gives the payment's lease back
        later = utcnow() + timedelta(minutes=10)
        assert await reconcile(resources, now=later) == 0
        assert proxy.accepted == reached
        uncertain = [(await payments_in_db(resources, o))[0] for _, o in orders[:2]]
        assert [p.status.value for p in uncertain] == ["processing", "processing"]
        assert None in [p.claimed_until for p in uncertain]  # the one it took, given back

        # healed: once the cool-down is over, the next payment is the probe and closes it
        await proxy.set(Fault.NONE)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (r := await pay(api, customer, shop, order_id)).status_code != 201:
            await _refused_and_written_off(r, resources, order_id, "circuit-open")
            assert time.monotonic() < deadline, "the circuit never half-opened"
            await asyncio.sleep(0.1)
        assert r.json()["status"] == "succeeded"
        assert resources.resilience.breakers.state("payments") == "closed"
        assert await order_status_in_db(resources, order_id) == "paid"
        assert len(localstripe.payment_intents(order_id=order_id)) == 1

        # the two cut attempts never got to the provider: past their lease, reconciliation
        # writes them off, and those orders can be paid
        assert await reconcile(resources, now=later) == 2
        for customer, order_id in orders[:2]:
            [payment] = await payments_in_db(resources, order_id)
            assert (payment.status.value, payment.failure_code) == ("failed", "not_at_provider")
            assert localstripe.payment_intents(order_id=order_id) == []
            r = await pay(api, customer, shop, order_id)
            assert r.status_code == 201, r.text


async def test_a_hung_provider_fills_the_bulkhead_and_the_extra_call_is_refused(
    database_url: str, backend: str, localstripe: LocalStripe, proxy: FaultProxy
) -> None:
    settings = _settings(
        database_url,
        backend,
        localstripe.settings(f"http://{proxy.address}", timeout_seconds=120),
        resilience=_resilience(max_concurrent=1, max_wait_seconds=0, failure_threshold=5),
        # the key's lock outlasts the 245 s payment lease of a 120 s call, as settings require
        idempotency={"lock_timeout_seconds": 300},
    )
    async with _serving(settings) as (api, resources):
        shop, [(first, first_order), (second, second_order)] = await _orders(api, 2)
        await proxy.set(Fault.HANG)
        before = proxy.accepted
        hung = asyncio.create_task(pay(api, first, shop, first_order))
        try:
            await proxy.wait_accepted(before + 1, within=DEADLINE_SECONDS)  # holds the slot
            r = await pay(api, second, shop, second_order)
            await _refused_and_written_off(r, resources, second_order, "busy")
            assert proxy.accepted == before + 1  # the refused call never left
        finally:
            await proxy.set(Fault.NONE)  # cuts the hung connection
            hung_response = await asyncio.wait_for(hung, DEADLINE_SECONDS)
        assert hung_response.status_code == 504, hung_response.text
        # the slot is free again: the refused order is paid
        r = await pay(api, second, shop, second_order)
        assert r.status_code == 201, r.text
        assert await order_status_in_db(resources, second_order) == "paid"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_of_two_endpoints_one_dead_payments_still_work(
    database_url: str, backend: str, localstripe: LocalStripe
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections refused
    settings = _settings(
        database_url,
        backend,
        localstripe.settings(),
        resilience=_resilience(),
        # the dead endpoint first: the first call goes to it
        discovery={"services": {"payments": {"urls": f"{dead}, {localstripe.url}"}}},
    )
    ejections = _sample("storefront_discovery_ejections_total", service="payments")
    async with _serving(settings) as (api, resources):
        shop, orders = await _orders(api, 3)
        for customer, order_id in orders:
            # a charge whose connection never opened was not sent: tried on the next endpoint
            r = await pay(api, customer, shop, order_id)
            assert r.status_code == 201, r.text
            assert await order_status_in_db(resources, order_id) == "paid"
            assert len(localstripe.payment_intents(order_id=order_id)) == 1
        # the dead endpoint was tried once, then left out of rotation for its cool-down
        assert _sample("storefront_discovery_ejections_total", service="payments") == (
            ejections + 1
        )
        assert _sample("storefront_discovery_endpoints", service="payments", state="out") == 1
        assert resources.resilience.breakers.state("payments") == "closed"
