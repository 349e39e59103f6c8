"""API v2: a client that knows one URL (its shop's) and the link relations places an order,
pays it and has it cancelled and refunded, following only the links the responses offer;
the action links appear exactly when the action is allowed (decision 0142)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2

from storefront.resources import Resources
from tests.payments.conftest import World
from tests.support.factories import Api, UserHandle
from tests.support.orders import order_status_in_db, stock_of
from tests.support.servers import LocalStripe

V2 = "/api/v2"
HAL = "application/hal+json"


async def follow(
    api: Api, user: UserHandle | None, method: str, href: str, body: Any = None
) -> dict[str, Any]:
    """Follow ``href`` as given (a link), expecting a HAL document back."""
    headers = {"Accept": HAL, **(user.auth if user else {})}
    if method == "POST":
        headers["Idempotency-Key"] = str(uuid.uuid4())
    r: httpx2.Response = await api.client.request(method, href, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    assert r.headers["content-type"].startswith(HAL)
    assert "Accept" in r.headers["vary"]
    return dict(r.json())


def href(document: dict[str, Any], rel: str) -> str:
    assert rel in document["_links"], (rel, sorted(document["_links"]))
    return str(document["_links"][rel]["href"])


async def test_an_order_from_creation_to_payment_and_refund_by_links_alone(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    customer, staff = world.customer, world.staff
    shop = await follow(api, customer, "GET", f"{V2}/shops/{world.shop['id']}")

    products = await follow(api, customer, "GET", href(shop, "sf:products"))
    product = next(p for p in products["_embedded"]["products"] if p["id"] == world.product["id"])
    assert product["price"] == {"amount": "12.50", "currency": "EUR"}
    assert "sf:archive" not in product["_links"]  # a customer archives nothing
    stock_before = await stock_of(resources, world.product)

    order = await follow(
        api,
        customer,
        "POST",
        href(shop, "sf:orders"),
        Api.order_body(({"id": product["id"]}, 3)),
    )
    assert order["status"] == "pending"
    assert order["total"] == {"amount": "37.50", "currency": "EUR"}
    assert [line["quantity"] for line in order["_embedded"]["lines"]] == [3]
    assert order["_embedded"]["payments"] == []
    assert {"sf:pay", "sf:cancel"} <= order["_links"].keys()
    assert order["_links"]["sf:customer"]["href"] == f"{V2}/users/me"  # the customer's own
    assert "sf:refund" not in order["_links"]
    assert await stock_of(resources, world.product) == stock_before - 3

    # the staff's view of the pending order: cancel, but never pay
    as_staff = await follow(api, staff, "GET", href(order, "self"))
    assert "sf:cancel" in as_staff["_links"]
    assert "sf:pay" not in as_staff["_links"]
    assert "sf:refund" not in as_staff["_links"]
    assert "sf:customer" not in as_staff["_links"]  # no v2 resource shows them a user

    payment = await follow(
        api, customer, "POST", href(order, "sf:pay"), {"payment_method": "pm_card_visa"}
    )
    assert payment["status"] == "succeeded"
    assert payment["amount"] == {"amount": "37.50", "currency": "EUR"}
    assert (await follow(api, customer, "GET", href(payment, "self")))["id"] == payment["id"]

    paid = await follow(api, customer, "GET", href(payment, "sf:order"))
    assert paid["status"] == "paid"
    assert [p["id"] for p in paid["_embedded"]["payments"]] == [payment["id"]]
    # paid: the customer may neither pay again nor cancel
    assert not {"sf:pay", "sf:cancel", "sf:refund"} & paid["_links"].keys()

    as_staff = await follow(api, staff, "GET", href(paid, "self"))
    assert {"sf:cancel", "sf:refund"} <= as_staff["_links"].keys()
    refunded = await follow(api, staff, "POST", href(as_staff, "sf:refund"))
    assert refunded["status"] == "cancelled"
    assert [p["status"] for p in refunded["_embedded"]["payments"]] == ["refunded"]
    assert not {"sf:pay", "sf:cancel", "sf:refund"} & refunded["_links"].keys()
    assert await order_status_in_db(resources, order["id"]) == "cancelled"
    assert await stock_of(resources, world.product) == stock_before
    [intent] = localstripe.payment_intents(order_id=order["id"])  # one charge, refunded
    assert intent["latest_charge"]["amount_refunded"] == 3750


async def test_a_customer_cancels_a_pending_order_by_its_link(
    api: Api, world: World, resources: Resources
) -> None:
    order = await follow(
        api, world.customer, "GET", f"{V2}/shops/{world.shop['id']}/orders/{world.order['id']}"
    )
    cancelled = await follow(api, world.customer, "POST", href(order, "sf:cancel"))
    assert cancelled["status"] == "cancelled"
    assert not {"sf:pay", "sf:cancel", "sf:refund"} & cancelled["_links"].keys()
    assert await order_status_in_db(resources, world.order["id"]) == "cancelled"
