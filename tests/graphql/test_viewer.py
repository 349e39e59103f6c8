"""``viewer``: who the caller is (the same values as GET /users/me, opened from the identity
service), and their own orders across shops as a Relay connection, in a constant number of
SQL statements whatever the page size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import QueryCounter
from tests.graphql.support import codes, data, gql
from tests.graphql.test_statement_counts import reads
from tests.support.factories import V1, Api, shop_with_staff

Counter = Callable[[], QueryCounter]

PROFILE = "{ viewer { id email displayName } }"

MY_ORDERS = """
query Mine($first: Int, $after: String) {
  viewer {
    orders(first: $first, after: $after) {
      edges { cursor node {
        id shopId customerId status total
        shop { id }
        lines { sku quantity product { id stock } }
        payments { id status }
      } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


async def my_orders(api: Api, user: Any, first: int, after: str | None = None) -> dict[str, Any]:
    body = data(await gql(api.client, MY_ORDERS, {"first": first, "after": after}, user=user))
    orders: dict[str, Any] = body["viewer"]["orders"]
    return orders


async def test_viewer_email_and_display_name_are_those_of_users_me(api: Api) -> None:
    user = await api.user(display_name="Ada Lovelace")
    viewer = data(await gql(api.client, PROFILE, user=user))["viewer"]
    me = await api.client.get(f"{V1}/users/me", headers=user.auth)
    assert me.status_code == 200, me.text
    assert viewer == {
        "id": user.id,
        "email": me.json()["email"],
        "displayName": me.json()["display_name"],
    }
    assert viewer["displayName"] == "Ada Lovelace"
    assert viewer["email"] == user.email


async def test_anonymous_viewer_is_unauthenticated(api: Api) -> None:
    assert codes(await gql(api.client, PROFILE)) == ["unauthenticated"]
    body = await gql(api.client, MY_ORDERS, {"first": 5})
    assert codes(body) == ["unauthenticated"]
    assert body["data"] is None


async def test_a_customer_sees_their_own_orders_in_every_shop_and_nobody_elses(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    _owner2, staff2, other_shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=100)
    other_product = await api.product(staff2, other_shop, stock=100)
    alice, bob = await api.user(), await api.user()
    alices = [
        await api.order(alice, shop, (product, 1)),
        await api.order(alice, other_shop, (other_product, 2)),
        await api.order(alice, shop, (product, 3)),
    ]
    bobs = await api.order(bob, shop, (product, 1))

    # two pages of two: every one of alice's orders once, in the order placed, none of bob's
    first = await my_orders(api, alice, 2)
    assert first["pageInfo"]["hasNextPage"] is True
    second = await my_orders(api, alice, 2, first["pageInfo"]["endCursor"])
    assert second["pageInfo"]["hasNextPage"] is False
    nodes = [edge["node"] for edge in first["edges"] + second["edges"]]
    assert [n["id"] for n in nodes] == [o["id"] for o in alices]
    assert {n["customerId"] for n in nodes} == {alice.id}
    assert [n["shopId"] for n in nodes] == [shop["id"], other_shop["id"], shop["id"]]
    assert [n["shop"]["id"] for n in nodes] == [n["shopId"] for n in nodes]
    assert [n["lines"][0]["quantity"] for n in nodes] == [1, 2, 3]
    assert all(n["payments"] == [] and n["status"] == "PENDING" for n in nodes)

    # bob sees only his own; staff of the shop see none of alice's here (their own: none)
    bob_nodes = (await my_orders(api, bob, 10))["edges"]
    assert [edge["node"]["id"] for edge in bob_nodes] == [bobs["id"]]
    assert (await my_orders(api, staff, 10))["edges"] == []


async def test_my_orders_run_a_constant_number_of_statements(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=10_000) for _ in range(3)]
    customer = await api.user()
    for n in range(30):
        await api.order(customer, shop, *[(products[(n + i) % 3], 1) for i in range(1 + n % 3)])

    async def measured(first: int) -> tuple[dict[str, Any], list[str]]:
        counter = count_queries()
        counter.reset()
        orders = await my_orders(api, customer, first)
        return orders, list(counter.statements)

    few, few_sql = await measured(2)
    many, many_sql = await measured(30)
    assert len(few["edges"]) == 2
    assert len(many["edges"]) == 30
    assert all(line["product"] is not None for e in many["edges"] for line in e["node"]["lines"])
    assert few_sql, "the counter saw no statements at all"
    assert len(few_sql) == len(many_sql), (few_sql, many_sql)
    assert len(reads(many_sql, "products")) == 1, many_sql
    assert len(reads(many_sql, "payments")) == 1, many_sql
    assert len(reads(many_sql, "order_lines")) == 1, many_sql
