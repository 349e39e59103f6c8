"""Paying and cancelling through GraphQL against the real localstripe emulator: payOrder
charges once per idempotency key (a retry through GraphQL or REST replays the payment),
an order's payments are visible to its customer and the staff (not to anyone else), and a
staff cancellation of a paid order refunds it first."""

from __future__ import annotations

import uuid

from storefront.resources import Resources
from tests.graphql.support import codes, data, gql
from tests.payments.conftest import World
from tests.support.factories import Api
from tests.support.orders import order_status_in_db
from tests.support.payments import pay
from tests.support.servers import LocalStripe

PAY = """
mutation Pay($shop: UUID!, $order: UUID!, $key: String!) {
  payOrder(shopId: $shop, orderId: $order, paymentMethod: "pm_card_visa", idempotencyKey: $key) {
    id status amount providerReference
  }
}
"""
PAYMENTS = """
query($shop: UUID!, $order: UUID!) { order(shopId: $shop, id: $order) {
  status payments { id status amount } } }
"""
CANCEL = """
mutation($shop: UUID!, $order: UUID!) { cancelOrder(shopId: $shop, orderId: $order) { status } }
"""


async def test_pay_then_cancel_through_graphql(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    key = str(uuid.uuid4())
    variables = {"shop": world.shop["id"], "order": world.order["id"], "key": key}
    # the shop's staff see the order but do not pay it: not found, as REST
    assert codes(await gql(api.client, PAY, variables, user=world.staff)) == ["not-found"]

    paid = data(await gql(api.client, PAY, variables, user=world.customer))["payOrder"]
    assert paid["status"] == "SUCCEEDED"
    assert paid["amount"] == {"cents": 2500, "currency": "EUR"}
    assert paid["providerReference"].startswith("pi_")
    again = data(await gql(api.client, PAY, variables, user=world.customer))["payOrder"]
    assert again["id"] == paid["id"]
    # the same key through REST is the same payment
    r = await pay(api, world.customer, world.shop, world.order["id"], key=key)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == paid["id"]
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1
    assert await order_status_in_db(resources, world.order["id"]) == "paid"

    reads = {"shop": world.shop["id"], "order": world.order["id"]}
    for reader in (world.customer, world.staff):
        order = data(await gql(api.client, PAYMENTS, reads, user=reader))["order"]
        assert order["status"] == "PAID"
        assert [p["id"] for p in order["payments"]] == [paid["id"]]
    stranger = await api.user()
    assert codes(await gql(api.client, PAYMENTS, reads, user=stranger)) == ["not-found"]

    # the customer may no longer cancel a paid order; the staff may, and it is refunded
    body = await gql(api.client, CANCEL, reads, user=world.customer)
    assert codes(body) == ["invalid-transition"]
    cancelled = data(await gql(api.client, CANCEL, reads, user=world.staff))["cancelOrder"]
    assert cancelled == {"status": "CANCELLED"}
    order = data(await gql(api.client, PAYMENTS, reads, user=world.staff))["order"]
    assert [p["status"] for p in order["payments"]] == ["REFUNDED"]
