"""A page of orders is read in one statement: the orders (the page's limit counts orders,
not their lines), each order's lines in position order, and the data key rows of their
customers, so opening the addresses costs no further query."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.conftest import QueryCounter
from tests.support.factories import Api, shop_with_staff
from tests.support.orders import order_url, orders_url


def _reads(counter: QueryCounter, table: str) -> list[str]:
    return [s for s in counter.statements if f"FROM {table}" in s or f"JOIN {table}" in s]


async def test_a_page_of_multi_line_orders_is_one_statement(
    api: Api, count_queries: Callable[[], QueryCounter]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=100) for _ in range(3)]
    alice, bob = await api.user(), await api.user()
    placed: dict[str, dict[str, Any]] = {}
    for customer, n in ((alice, 3), (bob, 2), (alice, 1), (bob, 3), (alice, 2)):
        # n lines, in an order that is not the products' own
        lines = [(products[(i * 2) % 3], i + 1) for i in range(n)]
        order = await api.order(customer, shop, *lines)
        placed[order["id"]] = order

    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        count_queries().reset()
        r = await api.client.get(orders_url(shop), params=params, headers=staff.auth)
        assert r.status_code == 200, r.text
        counter = count_queries()
        assert len(_reads(counter, "order_lines")) == 1, counter.statements
        # no key load of its own (SELECT data_keys...): the keys came with the page
        assert not [s for s in counter.statements if "SELECT data_keys." in s], counter.statements
        body = r.json()
        assert len(body["items"]) == (2 if body["next_cursor"] else 1)
        seen += body["items"]
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert pages == 3
    assert [o["id"] for o in seen] == sorted(placed, key=uuid.UUID)
    # every order as placed: its lines in position order, its address opened
    for order in seen:
        assert order == placed[order["id"]]
        assert order["shipping_address"] is not None
        assert order["customer_erased"] is False

    # a customer's own page: their orders only, lines intact
    r = await api.client.get(orders_url(shop), params={"limit": 10}, headers=bob.auth)
    assert r.status_code == 200, r.text
    own = r.json()["items"]
    assert [o["id"] for o in own] == sorted(
        (i for i, o in placed.items() if o["customer_id"] == str(bob.id)), key=uuid.UUID
    )
    assert [len(o["lines"]) for o in own] == [2, 3]
    assert all(o == placed[o["id"]] for o in own)


async def test_a_placed_order_is_served_as_get_serves_it(api: Api) -> None:
    """The 201's body is serialised without pydantic (order_json): byte for byte what the
    order's own GET (the response model) sends."""
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=10) for _ in range(2)]
    customer = await api.user()
    r = await api.place_order(customer, shop, (products[1], 2), (products[0], 1))
    assert r.status_code == 201, r.text
    got = await api.client.get(order_url(shop, r.json()["id"]), headers=customer.auth)
    assert got.status_code == 200, got.text
    assert r.content == got.content
