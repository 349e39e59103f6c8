"""Tenant isolation and BOLA: ids from one shop (or one customer) never work through another's
URL or token. Refusals are checked in the database too: a 404 that changed data is a leak."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from storefront.resources import Resources
from tests.support.factories import V1, Api, ProductInFactory, UserHandle, shop_with_staff
from tests.support.orders import (
    assert_problem,
    cancel_url,
    count_orders,
    order_status_in_db,
    order_url,
    orders_url,
    product_state,
    product_url,
    set_order_status,
    stock_of,
)


@dataclass
class Tenant:
    owner: UserHandle
    staff: UserHandle
    shop: dict[str, Any]
    product: dict[str, Any]


@dataclass
class Two:
    a: Tenant
    b: Tenant


@pytest.fixture
async def two(api: Api) -> Two:
    tenants = []
    for _ in range(2):
        owner, staff, shop = await shop_with_staff(api)
        product = await api.product(staff, shop, stock=10, price_cents=500)
        tenants.append(Tenant(owner, staff, shop, product))
    return Two(*tenants)


async def _etag(api: Api, shop: dict[str, Any], product: dict[str, Any]) -> str:
    r = await api.client.get(product_url(shop, product["id"]))
    assert r.status_code == 200, r.text
    return str(r.headers["etag"])


# --------------------------------------------------------------------------- products


async def test_product_of_shop_b_through_shop_a_url_is_404(
    api: Api, two: Two, resources: Resources
) -> None:
    a, b = two.a, two.b
    foreign = product_url(a.shop, b.product["id"])
    before = await product_state(resources, b.product)
    b_etag = await _etag(api, b.shop, b.product)

    assert_problem(await api.client.get(foreign), 404, "not-found")
    assert_problem(await api.client.get(foreign, headers=a.staff.auth), 404, "not-found")
    # even B's own staff cannot reach B's product through A's URL
    assert_problem(await api.client.get(foreign, headers=b.staff.auth), 404, "not-found")

    for headers in (a.staff.auth, a.owner.auth, {**a.staff.auth, "If-Match": b_etag}):
        r = await api.client.patch(foreign, json={"price_cents": 1, "stock": 0}, headers=headers)
        assert_problem(r, 404, "not-found")
        r = await api.client.delete(foreign, headers=headers)
        assert_problem(r, 404, "not-found")

    assert await product_state(resources, b.product) == before
    r = await api.client.get(product_url(b.shop, b.product["id"]))
    assert r.status_code == 200
    assert r.headers["etag"] == b_etag
    listing = await api.client.get(f"{V1}/shops/{a.shop['id']}/products")
    assert [p["id"] for p in listing.json()["items"]] == [a.product["id"]]


async def test_staff_of_shop_a_cannot_manage_shop_b_products(
    api: Api, two: Two, resources: Resources
) -> None:
    a, b = two.a, two.b
    before = await product_state(resources, b.product)
    b_etag = await _etag(api, b.shop, b.product)

    for intruder in (a.staff, a.owner):
        body = ProductInFactory.build().model_dump()
        r = await api.client.post(
            f"{V1}/shops/{b.shop['id']}/products", json=body, headers=intruder.auth
        )
        assert_problem(r, 403, "forbidden")
        r = await api.client.post(
            f"{V1}/shops/{b.shop['id']}/products/bulk",
            json={"items": [body]},
            headers=intruder.auth,
        )
        assert_problem(r, 403, "forbidden")
        r = await api.client.patch(
            product_url(b.shop, b.product["id"]),
            json={"price_cents": 1},
            headers={**intruder.auth, "If-Match": b_etag},
        )
        assert_problem(r, 403, "forbidden")
        r = await api.client.delete(product_url(b.shop, b.product["id"]), headers=intruder.auth)
        assert_problem(r, 403, "forbidden")

    assert await product_state(resources, b.product) == before
    listing = await api.client.get(f"{V1}/shops/{b.shop['id']}/products")
    assert [p["id"] for p in listing.json()["items"]] == [b.product["id"]]


# --------------------------------------------------------------------------- orders


async def test_staff_of_shop_a_is_a_plain_customer_in_shop_b(
    api: Api, two: Two, resources: Resources
) -> None:
    a, b = two.a, two.b
    b_customer = await api.user()
    a_customer = await api.user()
    theirs = await api.order(b_customer, b.shop, (b.product, 1))
    await api.order(a_customer, a.shop, (a.product, 1))
    mine = await api.order(a.staff, b.shop, (b.product, 2))  # anyone signed in may buy

    r = await api.client.get(orders_url(b.shop), headers=a.staff.auth)
    assert r.status_code == 200, r.text
    assert [o["id"] for o in r.json()["items"]] == [mine["id"]]
    for status in ("pending", "cancelled"):
        r = await api.client.get(
            orders_url(b.shop), params={"status": status}, headers=a.staff.auth
        )
        assert all(o["customer_id"] == a.staff.id for o in r.json()["items"])

    r = await api.client.get(order_url(b.shop, theirs["id"]), headers=a.staff.auth)
    assert_problem(r, 404, "not-found")
    r = await api.client.post(cancel_url(b.shop, theirs["id"]), headers=a.staff.auth)
    assert_problem(r, 404, "not-found")
    assert await order_status_in_db(resources, theirs["id"]) == "pending"

    # as a customer in B they can cancel their own pending order, like anyone
    r = await api.client.post(cancel_url(b.shop, mine["id"]), headers=a.staff.auth)
    assert r.status_code == 200, r.text
    assert await stock_of(resources, b.product) == 9  # 10 - 1 (theirs) - 2 (mine) + 2

    # ...but not the same order once paid: staff rights in A do not carry over
    paid = await api.order(a.staff, b.shop, (b.product, 1))
    await set_order_status(resources, paid["id"], "paid")
    r = await api.client.post(cancel_url(b.shop, paid["id"]), headers=a.staff.auth)
    assert_problem(r, 409, "invalid-transition")

    # while in A they still see everything
    r = await api.client.get(orders_url(a.shop), headers=a.staff.auth)
    assert len(r.json()["items"]) == 1
    assert r.json()["items"][0]["customer_id"] == a_customer.id


async def test_order_of_shop_a_through_shop_b_url_is_404(
    api: Api, two: Two, resources: Resources
) -> None:
    a, b = two.a, two.b
    customer = await api.user()
    order = await api.order(customer, a.shop, (a.product, 3))

    for user in (customer, a.staff, a.owner, b.staff, b.owner):
        r = await api.client.get(order_url(b.shop, order["id"]), headers=user.auth)
        assert_problem(r, 404, "not-found")
        r = await api.client.post(cancel_url(b.shop, order["id"]), headers=user.auth)
        assert_problem(r, 404, "not-found")
        r = await api.client.get(orders_url(b.shop), headers=user.auth)
        assert r.status_code == 200
        assert order["id"] not in [o["id"] for o in r.json()["items"]]

    assert await order_status_in_db(resources, order["id"]) == "pending"
    assert await stock_of(resources, a.product) == 7
    assert await stock_of(resources, b.product) == 10

    # through the right URL it is all still there
    r = await api.client.get(order_url(a.shop, order["id"]), headers=customer.auth)
    assert r.status_code == 200
    assert r.json() == order


async def test_customer_cannot_read_or_cancel_another_customers_order(
    api: Api, two: Two, resources: Resources
) -> None:
    a = two.a
    alice, mallory = await api.user(), await api.user()
    order = await api.order(alice, a.shop, (a.product, 2))
    missing = str(uuid.uuid4())

    r_other = await api.client.get(order_url(a.shop, order["id"]), headers=mallory.auth)
    r_missing = await api.client.get(order_url(a.shop, missing), headers=mallory.auth)
    # 404 exactly like a missing order: existence is not revealed
    other_body = assert_problem(r_other, 404, "not-found")
    missing_body = assert_problem(r_missing, 404, "not-found")
    assert other_body["detail"] == missing_body["detail"]
    assert other_body["title"] == missing_body["title"]
    assert alice.id not in r_other.text

    r_other = await api.client.post(cancel_url(a.shop, order["id"]), headers=mallory.auth)
    r_missing = await api.client.post(cancel_url(a.shop, missing), headers=mallory.auth)
    assert_problem(r_other, 404, "not-found")
    assert_problem(r_missing, 404, "not-found")
    assert r_other.json()["detail"] == r_missing.json()["detail"]

    r = await api.client.get(orders_url(a.shop), headers=mallory.auth)
    assert r.json()["items"] == []

    assert await order_status_in_db(resources, order["id"]) == "pending"
    assert await stock_of(resources, a.product) == 8


async def test_order_in_shop_a_with_a_product_of_shop_b_is_422(
    api: Api, two: Two, resources: Resources
) -> None:
    a, b = two.a, two.b
    customer = await api.user()
    before_a = await product_state(resources, a.product)
    before_b = await product_state(resources, b.product)

    r = await api.place_order(customer, a.shop, (b.product, 1))
    problem = assert_problem(r, 422, "unknown-product")
    assert problem["product_id"] == b.product["id"]

    # mixed with a valid line of A, in both body orders: still refused, nothing taken
    for lines in ([(a.product, 2), (b.product, 1)], [(b.product, 1), (a.product, 2)]):
        r = await api.place_order(customer, a.shop, *lines)
        assert_problem(r, 422, "unknown-product")

    assert await product_state(resources, a.product) == before_a
    assert await product_state(resources, b.product) == before_b
    assert await count_orders(resources) == 0


async def test_idempotency_keys_do_not_cross_shops_or_users(
    api: Api, two: Two, resources: Resources
) -> None:
    """A replay must never hand one tenant's (or user's) order to another."""
    a, b = two.a, two.b
    alice, bob = await api.user(), await api.user()
    key = str(uuid.uuid4())
    first = await api.place_order(alice, a.shop, (a.product, 1), key=key)
    assert first.status_code == 201, first.text

    by_bob = await api.place_order(bob, a.shop, (a.product, 1), key=key)
    assert by_bob.status_code == 201, by_bob.text
    assert "idempotent-replayed" not in by_bob.headers
    assert by_bob.json()["customer_id"] == bob.id

    in_b = await api.place_order(alice, b.shop, (b.product, 1), key=key)
    assert in_b.status_code == 201, in_b.text
    assert "idempotent-replayed" not in in_b.headers
    assert in_b.json()["shop_id"] == b.shop["id"]

    replay = await api.place_order(alice, a.shop, (a.product, 1), key=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content

    assert await count_orders(resources, a.shop) == 2
    assert await count_orders(resources, b.shop) == 1
