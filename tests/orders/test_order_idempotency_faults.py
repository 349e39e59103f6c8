"""A keyed order whose connection PostgreSQL terminated just before its answer was recorded
(a failover): the order and its answer commit in one transaction, so neither is left, the
stock is untouched and the retry with the same key places exactly one order (decision
0191: orders have no window between their effects and their key's answer)."""

from __future__ import annotations

import uuid

import pytest

from storefront.resources import Resources
from tests.support.factories import Api, shop_with_staff
from tests.support.orders import count_orders, stock_of
from tests.support.pg_faults import backend_killed_before

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)]
)

COMPLETION = "UPDATE idempotency_keys SET state="


async def test_an_order_whose_answer_was_lost_left_nothing_and_the_retry_places_one(
    api: Api, resources: Resources
) -> None:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=500, stock=3, currency="EUR")
    customer = await api.user()
    key = str(uuid.uuid4())
    with backend_killed_before(resources, COMPLETION) as killed:
        r = await api.place_order(customer, shop, (product, 2), key=key)
    assert killed == [COMPLETION]
    assert r.status_code >= 500, r.text
    assert await count_orders(resources, shop) == 0
    assert await stock_of(resources, product) == 3

    r = await api.place_order(customer, shop, (product, 2), key=key)
    assert r.status_code == 201, r.text
    again = await api.place_order(customer, shop, (product, 2), key=key)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == r.json()["id"]
    assert await count_orders(resources, shop) == 1
    assert await stock_of(resources, product) == 1
