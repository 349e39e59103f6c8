"""Hold limits (decision 0118): one customer cannot take a product off sale
with unpaid orders. Caps per line, per order, across the customer's pending orders and as a
share of a product's stock; per shop (owners and staff set them, validated), with platform
defaults. A refused order is a 409 `hold-limit-exceeded` problem and reserves nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storefront.resources import Resources
from tests.support.factories import V1, Api, UserHandle, shop_with_staff
from tests.support.orders import (
    assert_problem,
    assert_validation_error,
    cancel_url,
    count_orders,
    stock_of,
)


def limits_url(shop: dict[str, Any]) -> str:
    return f"{V1}/shops/{shop['id']}/order-limits"


async def set_limits(api: Api, user: UserHandle, shop: dict[str, Any], **values: Any) -> Any:
    r = await api.client.patch(limits_url(shop), json=values, headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()


def assert_refused(r: Any, limit: str) -> dict[str, Any]:
    body = assert_problem(r, 409, "hold-limit-exceeded")
    assert body["limit"] == limit, body
    return body


async def test_defaults_are_served_and_a_shop_sets_its_own(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    assert resources.settings is not None
    defaults = resources.settings.orders

    got = await api.client.get(limits_url(shop), headers=customer.auth)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "shop_id": shop["id"],
        "max_line_quantity": defaults.max_line_quantity,
        "max_order_units": defaults.max_order_units,
        "max_pending_units": defaults.max_pending_units,
        "max_pending_stock_percent": defaults.max_pending_stock_percent,
        "stock_share_floor_units": defaults.stock_share_floor_units,
        "payment_window_minutes": defaults.payment_window_minutes,
        "shop_set": [],
    }

    changed = await set_limits(api, staff, shop, max_order_units=7, max_pending_stock_percent=80)
    assert changed["max_order_units"] == 7
    assert changed["max_pending_stock_percent"] == 80
    assert changed["max_line_quantity"] == defaults.max_line_quantity
    assert changed["shop_set"] == ["max_order_units", "max_pending_stock_percent"]
    # a field left out stays; null goes back to the platform default
    again = await set_limits(api, owner, shop, max_order_units=None)
    assert again["max_order_units"] == defaults.max_order_units
    assert again["max_pending_stock_percent"] == 80
    assert again["shop_set"] == ["max_pending_stock_percent"]
    assert (await api.client.get(limits_url(shop), headers=customer.auth)).json() == again


@pytest.mark.parametrize(
    "body",
    [
        {"max_line_quantity": 0},
        {"max_line_quantity": 1001},
        {"max_order_units": -1},
        {"max_pending_units": 1_000_001},
        {"max_pending_stock_percent": 0},
        {"max_pending_stock_percent": 101},
        {"max_pending_stock_percent": "50"},
        {"max_pending_stock_percent": True},
        {"max_order_units": 2.5},
        {"unknown_limit": 3},
    ],
)
async def test_bad_limits_are_422_and_change_nothing(api: Api, body: dict[str, Any]) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    before = (await api.client.get(limits_url(shop), headers=staff.auth)).json()

    r = await api.client.patch(limits_url(shop), json=body, headers=staff.auth)

    assert_validation_error(r, next(iter(body)))
    assert (await api.client.get(limits_url(shop), headers=staff.auth)).json() == before


async def test_only_the_shops_staff_may_change_its_limits(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    _other_owner, other_staff, _other_shop = await shop_with_staff(api)
    customer = await api.user()
    before = (await api.client.get(limits_url(shop), headers=staff.auth)).json()

    for user in (customer, other_staff):
        r = await api.client.patch(
            limits_url(shop), json={"max_order_units": 100_000}, headers=user.auth
        )
        assert_problem(r, 403)
    anonymous = await api.client.patch(limits_url(shop), json={"max_order_units": 1})
    assert_problem(anonymous, 401)
    assert (await api.client.get(limits_url(shop), headers=staff.auth)).json() == before


async def test_line_and_order_caps(api: Api, resources: Resources) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    tea = await api.product(staff, shop, stock=100)
    cups = await api.product(staff, shop, stock=100)
    await set_limits(api, staff, shop, max_line_quantity=5, max_order_units=8)
    customer = await api.user()

    too_many = await api.place_order(customer, shop, (tea, 6))
    body = assert_refused(too_many, "max_line_quantity")
    assert body["max"] == 5
    assert body["product_id"] == tea["id"]
    too_big = await api.place_order(customer, shop, (tea, 5), (cups, 4))
    assert assert_refused(too_big, "max_order_units")["max"] == 8
    assert await stock_of(resources, tea) == 100
    assert await stock_of(resources, cups) == 100
    assert await count_orders(resources) == 0

    ok = await api.place_order(customer, shop, (tea, 5), (cups, 3))
    assert ok.status_code == 201, ok.text


async def test_pending_units_are_capped_across_orders_until_one_is_cancelled(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=1000)
    await set_limits(api, staff, shop, max_pending_units=10)
    customer = await api.user()
    other = await api.user()

    first = await api.order(customer, shop, (product, 6))
    await api.order(customer, shop, (product, 4))
    r = await api.place_order(customer, shop, (product, 1))
    assert assert_refused(r, "max_pending_units")["max"] == 10
    assert await stock_of(resources, product) == 990
    assert await count_orders(resources) == 2

    # the cap is per customer: another customer still buys
    assert (await api.place_order(other, shop, (product, 10))).status_code == 201
    # what is no longer pending no longer counts
    cancelled = await api.client.post(cancel_url(shop, first["id"]), headers=customer.auth)
    assert cancelled.status_code == 200, cancelled.text
    assert (await api.place_order(customer, shop, (product, 6))).status_code == 201


async def test_one_customer_cannot_take_a_product_off_sale(api: Api, resources: Resources) -> None:
    """The platform default (50% of what the customer can see of the product's stock)."""
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    hoarder = await api.user()

    everything = await api.place_order(hoarder, shop, (product, 10))
    assert assert_refused(everything, "max_pending_stock_percent")["max"] == 5
    assert await stock_of(resources, product) == 10  # nothing stayed reserved

    await api.order(hoarder, shop, (product, 3))
    await api.order(hoarder, shop, (product, 2))
    more = await api.place_order(hoarder, shop, (product, 1))
    assert assert_refused(more, "max_pending_stock_percent")["product_id"] == product["id"]
    assert await stock_of(resources, product) == 5

    # the rest stays on sale for everyone else
    assert (await api.place_order(await api.user(), shop, (product, 2))).status_code == 201


async def test_buying_the_last_few_units_stays_possible(api: Api, resources: Resources) -> None:
    """Below the floor (5 units by default) the share does not apply."""
    _owner, staff, shop = await shop_with_staff(api)
    chairs = await api.product(staff, shop, stock=4)
    lamp = await api.product(staff, shop, stock=1)
    customer = await api.user()

    assert (await api.place_order(customer, shop, (chairs, 4), (lamp, 1))).status_code == 201
    assert await stock_of(resources, chairs) == 0
    assert await stock_of(resources, lamp) == 0


async def test_a_shop_may_let_one_customer_hold_all_of_a_product(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    await set_limits(api, staff, shop, max_pending_stock_percent=100)
    customer = await api.user()

    assert (await api.place_order(customer, shop, (product, 10))).status_code == 201
    assert await stock_of(resources, product) == 0


async def test_concurrent_orders_of_one_customer_cannot_pass_the_share_cap_together(
    api: Api, resources: Resources
) -> None:
    """Each order checks the customer's holdings after taking the product row's lock, so
    orders racing for the same product see each other: exactly half of 20 units go."""
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=20)
    customer = await api.user()

    responses = await asyncio.gather(
        *(api.place_order(customer, shop, (product, 1)) for _ in range(20))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 10 + [409] * 10, [r.text for r in responses if r.status_code != 201]
    for r in responses:
        if r.status_code == 409:
            assert_refused(r, "max_pending_stock_percent")
    assert await stock_of(resources, product) == 10
    assert await count_orders(resources) == 10


async def test_concurrent_orders_of_one_customer_for_different_products_respect_the_pending_cap(
    api: Api, resources: Resources
) -> None:
    """No product lock is shared here: the customer's holdings are checked under a lock of
    their own (PostgreSQL; SQLite serialises writers anyway)."""
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=100) for _ in range(12)]
    await set_limits(api, staff, shop, max_pending_units=5)
    customer = await api.user()

    responses = await asyncio.gather(
        *(api.place_order(customer, shop, (product, 1)) for product in products)
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [409] * 7, [r.text for r in responses if r.status_code != 201]
    for r in responses:
        if r.status_code == 409:
            assert_refused(r, "max_pending_units")
    assert await count_orders(resources) == 5
    assert sum([await stock_of(resources, p) for p in products]) == 12 * 100 - 5
