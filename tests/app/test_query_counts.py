"""N+1 guards: listings send a fixed number of SQL statements whatever the page size."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx2

from tests.conftest import QueryCounter
from tests.support.factories import V1, Api, ProductInFactory, UserHandle, shop_with_staff

Counter = Callable[[], QueryCounter]


async def measured_get(
    api: Api, count_queries: Counter, url: str, **kwargs: Any
) -> tuple[httpx2.Response, list[str]]:
    """GET ``url`` and return the response with the statements that request alone sent."""
    counter = count_queries()
    counter.reset()
    r = await api.client.get(url, **kwargs)
    statements = list(counter.statements)
    assert r.status_code == 200, r.text
    return r, statements


def selects_from(statements: list[str], table: str) -> list[str]:
    """The SELECTs that read ``table`` (from it or joined to it)."""
    return [
        s
        for s in statements
        if s.lstrip().upper().startswith("SELECT")
        and re.search(rf"\b(FROM|JOIN) {table}\b", s) is not None
    ]


async def test_product_listing_statement_count_does_not_depend_on_page_size(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    items = [ProductInFactory.build(sku=f"QC-{i:03d}").model_dump() for i in range(70)]
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/products/bulk", json={"items": items}, headers=staff.auth
    )
    assert r.status_code == 200, r.text
    url = f"{V1}/shops/{shop['id']}/products"

    small, small_sql = await measured_get(api, count_queries, url, params={"limit": 5})
    large, large_sql = await measured_get(api, count_queries, url, params={"limit": 50})
    full, full_sql = await measured_get(api, count_queries, url, params={"limit": 100})

    assert len(small.json()["items"]) == 5
    assert len(large.json()["items"]) == 50
    assert len(full.json()["items"]) == 70
    assert small_sql, "the counter saw no statements at all"
    assert len(small_sql) == len(large_sql) == len(full_sql), (small_sql, large_sql, full_sql)
    # and the products themselves come from exactly one query
    assert len(selects_from(small_sql, "products")) == 1, small_sql
    assert len(selects_from(large_sql, "products")) == 1, large_sql

    # a filtered, later page costs the same
    cursor = small.json()["next_cursor"]
    page2, page2_sql = await measured_get(
        api, count_queries, url, params={"limit": 50, "cursor": cursor, "q": "product"}
    )
    assert len(page2.json()["items"]) == 50
    assert len(page2_sql) == len(small_sql), page2_sql


async def _products(api: Api, staff: UserHandle, shop: dict[str, Any]) -> list[dict[str, Any]]:
    return [await api.product(staff, shop, stock=1000) for _ in range(3)]


async def _place_orders(
    api: Api,
    customer: UserHandle,
    shop: dict[str, Any],
    products: list[dict[str, Any]],
    count: int,
    start: int,
) -> None:
    for n in range(start, start + count):
        lines = 2 + n % 2  # alternately 2 and 3 lines
        order = await api.order(
            customer, shop, *[(products[i], 1 + (n + i) % 3) for i in range(lines)]
        )
        assert len(order["lines"]) == lines


async def test_order_listing_statement_count_does_not_depend_on_number_of_orders(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = await _products(api, staff, shop)
    customers = [await api.user() for _ in range(2)]
    url = f"{V1}/shops/{shop['id']}/orders"
    params = {"limit": 50}

    await _place_orders(api, customers[0], shop, products, 2, start=0)
    few, few_sql = await measured_get(api, count_queries, url, params=params, headers=staff.auth)
    assert len(few.json()["items"]) == 2
    assert all(len(o["lines"]) in (2, 3) for o in few.json()["items"])

    await _place_orders(api, customers[1], shop, products, 18, start=2)
    many, many_sql = await measured_get(api, count_queries, url, params=params, headers=staff.auth)
    orders = many.json()["items"]
    assert len(orders) == 20
    assert many.json()["next_cursor"] is None
    assert sorted(len(o["lines"]) for o in orders) == [2] * 10 + [3] * 10
    assert {o["customer_id"] for o in orders} == {c.id for c in customers}

    assert few_sql, "the counter saw no statements at all"
    assert len(few_sql) == len(many_sql), (few_sql, many_sql)
    assert len(selects_from(many_sql, "order_lines")) == 1, many_sql


async def test_order_listing_page_size_does_not_change_statement_count(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = await _products(api, staff, shop)
    customer = await api.user()
    await _place_orders(api, customer, shop, products, 12, start=0)
    url = f"{V1}/shops/{shop['id']}/orders"

    small, small_sql = await measured_get(
        api, count_queries, url, params={"limit": 2}, headers=staff.auth
    )
    large, large_sql = await measured_get(
        api, count_queries, url, params={"limit": 12}, headers=staff.auth
    )
    assert len(small.json()["items"]) == 2
    assert len(large.json()["items"]) == 12
    assert len(small_sql) == len(large_sql), (small_sql, large_sql)
