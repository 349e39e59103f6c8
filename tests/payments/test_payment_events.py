"""Paying and refunding through the API record ``order.paid`` and ``order.refunded`` in the
settlement's transaction, and the sales projection (GET /shops/{id}/sales) counts the revenue
and the refund; a declined card records nothing. Against the real emulator, on SQLite and
PostgreSQL (in-process delivery)."""

from __future__ import annotations

from typing import Any

import httpx2

from storefront.events import EventType
from storefront.resources import Resources
from storefront.sales import SALES_PROJECTION
from tests.payments.conftest import World
from tests.support.events import eventually, relayed_and_consumed, stored_events
from tests.support.factories import V1, Api
from tests.support.orders import cancel_url
from tests.support.payments import pay


async def _sales_today(
    client: httpx2.AsyncClient, world: World, resources: Resources
) -> dict[str, Any]:
    await eventually(
        lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
        bool,
        what="events relayed and consumed",
    )
    r = await client.get(f"{V1}/shops/{world.shop['id']}/sales", headers=world.owner.auth)
    assert r.status_code == 200, r.text
    [day] = r.json()["days"]
    assert day["currency"] == "EUR"
    return dict(day)


async def _order_events(resources: Resources, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.type, e.data)
        for e in await stored_events(resources.sessionmaker)
        if e.subject == f"orders/{order_id}"
    ]


async def test_paying_and_refunding_move_the_sales_projection(
    api: Api, client: httpx2.AsyncClient, resources: Resources, world: World
) -> None:
    order_id = world.order["id"]  # 2 x 12.50 EUR
    before = await _sales_today(client, world, resources)
    assert (before["orders_placed"], before["orders_paid"], before["revenue_cents"]) == (1, 0, 0)

    # a declined card: nothing charged, nothing recorded
    r = await pay(api, world.customer, world.shop, order_id, "pm_card_chargeCustomerFail")
    assert r.status_code == 402, r.text
    assert [t for t, _ in await _order_events(resources, order_id)] == [EventType.order_placed]

    r = await pay(api, world.customer, world.shop, order_id)
    assert r.status_code == 201, r.text
    payment_id = r.json()["id"]
    paid = await _sales_today(client, world, resources)
    assert (paid["orders_paid"], paid["revenue_cents"]) == (1, 2500)
    assert (paid["refunds"], paid["refunded_cents"]) == (0, 0)

    # staff cancel the paid order: refunded at the provider, then cancelled
    r = await client.post(cancel_url(world.shop, order_id), headers=world.staff.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    refunded = await _sales_today(client, world, resources)
    assert (refunded["orders_paid"], refunded["revenue_cents"]) == (1, 2500)
    assert (refunded["refunds"], refunded["refunded_cents"]) == (1, 2500)
    assert refunded["orders_cancelled"] == 1

    events = await _order_events(resources, order_id)
    assert [t for t, _ in events] == [
        EventType.order_placed,
        EventType.order_paid,
        EventType.order_refunded,
        EventType.order_cancelled,
    ]
    for _, data in events[1:3]:
        assert data == {
            "id": order_id,
            "shop_id": world.shop["id"],
            "payment_id": payment_id,
            "currency": "EUR",
            "amount_cents": 2500,
        }
