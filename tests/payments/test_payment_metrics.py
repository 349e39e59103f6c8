"""Payment KPIs move with what happens: attempts, results (succeeded, declined, refunded),
amounts by currency, provider latency (the dashboard's payment panels read these)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.payments.conftest import World
from tests.support.factories import Api
from tests.support.orders import cancel_url
from tests.support.payments import pay


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    return {
        "attempts": sample("storefront_payment_attempts_total", currency="EUR"),
        "succeeded": sample("storefront_payments_total", result="succeeded"),
        "declined": sample("storefront_payments_total", result="declined"),
        "refunded": sample("storefront_payments_total", result="refunded"),
        "taken": sample(
            "storefront_payment_amount_cents_total", currency="EUR", result="succeeded"
        ),
        "given_back": sample(
            "storefront_payment_amount_cents_total", currency="EUR", result="refunded"
        ),
        "creates": sample(
            "storefront_payment_provider_seconds_count", operation="create", outcome="ok"
        ),
        "declined_creates": sample(
            "storefront_payment_provider_seconds_count", operation="create", outcome="declined"
        ),
        "refunds": sample(
            "storefront_payment_provider_seconds_count", operation="refund", outcome="ok"
        ),
    }


async def test_payment_kpis_follow_a_decline_a_payment_and_a_refund(api: Api, world: World) -> None:
    before = snapshot()
    declined = await pay(
        api, world.customer, world.shop, world.order["id"], "pm_card_chargeCustomerFail"
    )
    assert declined.status_code == 402
    assert (await pay(api, world.customer, world.shop, world.order["id"])).status_code == 201
    r = await api.client.post(cancel_url(world.shop, world.order["id"]), headers=world.staff.auth)
    assert r.status_code == 200, r.text
    after = snapshot()
    delta = {name: after[name] - before[name] for name in before}
    assert delta == {
        "attempts": 2,
        "succeeded": 1,
        "declined": 1,
        "refunded": 1,
        "taken": 2500,
        "given_back": 2500,
        "creates": 1,
        "declined_creates": 1,
        "refunds": 1,
    }
