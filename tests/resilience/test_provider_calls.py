"""The guard around the payment provider's SDK (Stripe's official client) against the real
localstripe emulator behind a fault-injecting proxy: a declined card is an answer, not a
failure; resets and a hung emulator open the circuit; while open nothing reaches the
emulator; a retried read after the cool-down closes it again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from prometheus_client import REGISTRY

from storefront.resilience import CircuitOpen, Resilience
from storefront.settings import ResilienceSettings
from tests.support.faults import Fault, FaultProxy
from tests.support.servers import LocalStripe

ERRORS = (stripe.APIConnectionError, TimeoutError)


@pytest.fixture
async def proxy(localstripe: LocalStripe) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", localstripe.port) as proxy:
        yield proxy


@pytest.fixture
async def client(proxy: FaultProxy) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.AIOHTTPClient()
    yield stripe.StripeClient(
        LocalStripe.SECRET_KEY,
        base_addresses={"api": f"http://{proxy.address}"},
        http_client=http,
        max_network_retries=0,  # retries are the guard's decision
    )
    await http.close_async()  # type: ignore[no-untyped-call]


def payments(**settings: Any) -> tuple[Resilience, str]:
    values: dict[str, Any] = {
        "failure_threshold": 2,
        "cool_down_seconds": 1.0,
        "timeout_seconds": 20.0,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
        **settings,
    }
    name = f"payments-{uuid.uuid4().hex[:8]}"  # metrics of this test's own
    return Resilience(ResilienceSettings(**values), redis=None), name


async def pay(
    res: Resilience, name: str, client: stripe.StripeClient, method: str
) -> stripe.PaymentIntent:
    async with res.guard(name, exclude=(stripe.CardError,)):
        return await client.v1.payment_intents.create_async(
            params={
                "amount": 1250,
                "currency": "eur",
                "payment_method": method,
                "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]
                "confirm": True,
            }
        )


def calls(name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_dependency_calls_total", {"dependency": name, "outcome": outcome}
    )
    return value or 0.0


async def test_declined_cards_are_answers_and_keep_the_circuit_closed(
    client: stripe.StripeClient,
) -> None:
    res, name = payments()
    for _ in range(4):
        with pytest.raises(stripe.CardError):
            await pay(res, name, client, "pm_card_chargeCustomerFail")
    assert res.breakers.state(name) == "closed"
    assert calls(name, "excluded") == 4
    intent = await pay(res, name, client, "pm_card_visa")
    assert intent.status == "succeeded"


async def test_resets_open_the_circuit_and_a_retried_read_closes_it(
    client: stripe.StripeClient, proxy: FaultProxy
) -> None:
    res, name = payments()
    intent = await pay(res, name, client, "pm_card_visa")
    await proxy.set(Fault.RESET)
    for _ in range(2):
        with pytest.raises(ERRORS):
            await pay(res, name, client, "pm_card_visa")
    assert res.breakers.state(name) == "opened"
    reached = proxy.accepted
    with pytest.raises(CircuitOpen):
        await pay(res, name, client, "pm_card_visa")
    assert proxy.accepted == reached  # nothing reached the emulator
    await proxy.set(Fault.NONE)
    deadline = time.monotonic() + 30
    while True:  # a read is idempotent: retried, and the probe once the cool-down is over
        try:
            read = await res.call(
                name,
                lambda: client.v1.payment_intents.retrieve_async(intent.id),
                idempotent=True,
                retry_on=(stripe.APIConnectionError,),
            )
            break
        except CircuitOpen:
            assert time.monotonic() < deadline, "the circuit never half-opened"
            await asyncio.sleep(0.05)
    assert read.id == intent.id
    assert res.breakers.state(name) == "closed"


async def test_a_hung_emulator_is_cut_off_at_the_deadline(
    client: stripe.StripeClient, proxy: FaultProxy
) -> None:
    res, name = payments(timeout_seconds=0.5)
    await proxy.set(Fault.HANG)
    for _ in range(2):
        with pytest.raises(ERRORS):
            await pay(res, name, client, "pm_card_visa")
    assert res.breakers.state(name) == "opened"
    assert calls(name, "timeout") + calls(name, "failure") == 2
