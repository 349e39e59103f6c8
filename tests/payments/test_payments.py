"""Paying orders through the real localstripe emulator, on SQLite and PostgreSQL: pay,
decline, the 409s, who may pay and read, double submits (same key, another key, at once),
and the refund when staff cancel a paid order. Every charge is counted at the emulator."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from storefront.resources import Resources
from tests.payments.conftest import World
from tests.support.factories import Api
from tests.support.orders import cancel_url, order_status_in_db, set_order_status, stock_of
from tests.support.payments import pay, payments_in_db, payments_url
from tests.support.servers import LocalStripe


def charges(localstripe: LocalStripe, world: World) -> list[dict[str, Any]]:
    """The PaymentIntents the emulator holds for the world's order."""
    return localstripe.payment_intents(order_id=world.order["id"])


async def test_paying_an_order(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    r = await pay(api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["order_id"] == world.order["id"]
    assert payment["status"] == "succeeded"
    assert payment["amount_cents"] == 2500
    assert payment["currency"] == "EUR"
    assert payment["provider_reference"].startswith("pi_")
    assert r.headers["location"].endswith(f"/orders/{world.order['id']}/payments")
    assert await order_status_in_db(resources, world.order["id"]) == "paid"
    [intent] = charges(localstripe, world)
    assert intent["id"] == payment["provider_reference"]
    assert intent["status"] == "succeeded"
    assert intent["amount"] == 2500
    assert intent["currency"] == "eur"
    # our payment id travels as the PaymentIntent's metadata (and its idempotency key)
    assert intent["metadata"]["payment_id"] == payment["id"]

    for reader in (world.customer, world.staff, world.owner):
        r = await api.client.get(payments_url(world.shop, world.order["id"]), headers=reader.auth)
        assert r.status_code == 200, r.text
        assert [p["id"] for p in r.json()["items"]] == [payment["id"]]
        assert r.headers["cache-control"] == "no-store"


async def test_someone_else_neither_pays_nor_reads(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    stranger = await api.user()
    for user in (stranger, world.staff):  # staff see the order, but only its customer pays
        r = await pay(api, user, world.shop, world.order["id"])
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await api.client.get(payments_url(world.shop, world.order["id"]), headers=stranger.auth)
    assert r.status_code == 404
    r = await pay(api, world.customer, world.shop, str(uuid.uuid4()))
    assert r.status_code == 404
    assert charges(localstripe, world) == []
    assert await payments_in_db(resources, world.order["id"]) == []
    assert await order_status_in_db(resources, world.order["id"]) == "pending"


async def test_a_declined_card_is_402_and_the_order_stays_payable(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    r = await pay(api, world.customer, world.shop, world.order["id"], "pm_card_chargeCustomerFail")
    assert r.status_code == 402, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/payment-declined")
    assert await order_status_in_db(resources, world.order["id"]) == "pending"
    [failed] = await payments_in_db(resources, world.order["id"])
    assert failed.status.value == "failed"
    assert failed.failure_code == "card_declined"
    assert str(failed.id) == problem["payment_id"]

    r = await pay(api, world.customer, world.shop, world.order["id"], "pm_card_visa")
    assert r.status_code == 201, r.text
    assert await order_status_in_db(resources, world.order["id"]) == "paid"
    statuses = [p.status.value for p in await payments_in_db(resources, world.order["id"])]
    assert statuses == ["failed", "succeeded"]
    assert [i["status"] for i in charges(localstripe, world)].count("succeeded") == 1


async def test_an_unknown_payment_method_is_422_and_charges_nothing(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    r = await pay(api, world.customer, world.shop, world.order["id"], "pm_no_such_method")
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/payment-method-rejected")
    assert await order_status_in_db(resources, world.order["id"]) == "pending"
    assert charges(localstripe, world) == []


async def test_paying_a_paid_cancelled_or_expired_order_is_409(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    assert (await pay(api, world.customer, world.shop, world.order["id"])).status_code == 201
    r = await pay(api, world.customer, world.shop, world.order["id"])  # another key
    assert r.status_code == 409, r.text
    assert r.json()["current_status"] == "paid"
    assert len(charges(localstripe, world)) == 1

    cancelled = await api.order(world.customer, world.shop, (world.product, 1))
    r = await api.client.post(cancel_url(world.shop, cancelled["id"]), headers=world.customer.auth)
    assert r.status_code == 200, r.text
    expired = await api.order(world.customer, world.shop, (world.product, 1))
    await set_order_status(resources, expired["id"], "expired")
    for order, status in ((cancelled, "cancelled"), (expired, "expired")):
        r = await pay(api, world.customer, world.shop, order["id"])
        assert r.status_code == 409, r.text
        assert r.json()["current_status"] == status
        assert localstripe.payment_intents(order_id=order["id"]) == []
        assert await payments_in_db(resources, order["id"]) == []


async def test_the_same_key_again_is_the_same_payment(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    key = str(uuid.uuid4())
    first = await pay(api, world.customer, world.shop, world.order["id"], key=key)
    again = await pay(api, world.customer, world.shop, world.order["id"], key=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(await payments_in_db(resources, world.order["id"])) == 1
    assert len(charges(localstripe, world)) == 1


async def test_concurrent_submits_charge_once(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    """Five clicks at once, each with a key of its own: one charge, the rest 409."""
    answers = await asyncio.gather(
        *(pay(api, world.customer, world.shop, world.order["id"]) for _ in range(5))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1, [r.text for r in answers]
    assert set(codes) <= {201, 409}
    payments = await payments_in_db(resources, world.order["id"])
    assert [p.status.value for p in payments] == ["succeeded"]
    assert [i["status"] for i in charges(localstripe, world)] == ["succeeded"]
    assert await order_status_in_db(resources, world.order["id"]) == "paid"


async def test_staff_cancelling_a_paid_order_refund_it(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    stock_before = await stock_of(resources, world.product)
    r = await pay(api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    payment = r.json()

    # the customer may not cancel a paid order: nothing is refunded
    r = await api.client.post(
        cancel_url(world.shop, world.order["id"]), headers=world.customer.auth
    )
    assert r.status_code == 409, r.text
    [intent] = charges(localstripe, world)
    assert intent["latest_charge"]["refunded"] is False

    r = await api.client.post(cancel_url(world.shop, world.order["id"]), headers=world.staff.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert await stock_of(resources, world.product) == stock_before + 2
    [refunded] = await payments_in_db(resources, world.order["id"])
    assert str(refunded.id) == payment["id"]
    assert refunded.status.value == "refunded"
    [intent] = charges(localstripe, world)
    assert intent["latest_charge"]["refunded"] is True
    assert intent["latest_charge"]["amount_refunded"] == 2500

    r = await api.client.get(payments_url(world.shop, world.order["id"]), headers=world.staff.auth)
    assert [p["status"] for p in r.json()["items"]] == ["refunded"]
    # cancelling again: the order is cancelled, nothing is refunded twice
    r = await api.client.post(cancel_url(world.shop, world.order["id"]), headers=world.staff.auth)
    assert r.status_code == 409
    [intent] = charges(localstripe, world)
    assert intent["latest_charge"]["amount_refunded"] == 2500
