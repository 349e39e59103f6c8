"""N+1-free by construction: a page of orders with their lines, the lines' products, the
shop and the payments costs the same number of SQL statements for 2 orders as for 50."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.conftest import QueryCounter
from tests.graphql.support import data, gql
from tests.support.factories import Api, shop_with_staff

Counter = Callable[[], QueryCounter]


def reads(statements: list[str], table: str) -> list[str]:
    """The SELECTs that read ``table`` (from it or joined to it)."""
    return [
        s
        for s in statements
        if s.lstrip().upper().startswith("SELECT")
        and re.search(rf"\b(FROM|JOIN) {table}\b", s) is not None
    ]


NESTED = """
query Nested($shop: UUID!, $first: Int) {
  orders(shopId: $shop, first: $first) {
    nodes {
      id total createdAt
      shop { id name }
      lines { sku quantity product { id name price stock } }
      payments { id status amount }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def test_nested_order_query_runs_a_constant_number_of_statements(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=10_000) for _ in range(4)]
    customers = [await api.user() for _ in range(3)]
    for n in range(50):
        lines = [(products[(n + i) % 4], 1 + i) for i in range(1 + n % 3)]
        await api.order(customers[n % 3], shop, *lines)

    async def measured(first: int) -> tuple[dict[str, object], list[str]]:
        counter = count_queries()
        counter.reset()
        body = data(await gql(api.client, NESTED, {"shop": shop["id"], "first": first}, user=staff))
        return body, list(counter.statements)

    few, few_sql = await measured(2)
    many, many_sql = await measured(50)
    orders = many["orders"]
    assert isinstance(orders, dict)
    nodes = orders["nodes"]
    assert len(nodes) == 50
    assert sum(len(o["lines"]) for o in nodes) == sum(1 + n % 3 for n in range(50))
    assert all(line["product"] is not None for o in nodes for line in o["lines"])
    assert {o["shop"]["id"] for o in nodes} == {shop["id"]}
    assert few_sql, "the counter saw no statements at all"
    assert len(few_sql) == len(many_sql), (few_sql, many_sql)
    # one statement per relation: products and payments read once for the whole page
    assert len(reads(many_sql, "products")) == 1, many_sql
    assert len(reads(many_sql, "payments")) == 1, many_sql
    assert len(reads(many_sql, "order_lines")) == 1, many_sql
    assert len(few["orders"]["nodes"]) == 2  # type: ignore[index]


async def test_the_shop_of_every_product_of_a_page_is_read_once(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(12):
        await api.product(staff, shop)
    query = """query($shop: UUID!) { products(shopId: $shop, first: 12) {
      nodes { id shop { id slug } } } }"""
    counter = count_queries()
    counter.reset()
    nodes = data(await gql(api.client, query, {"shop": shop["id"]}))["products"]["nodes"]
    assert len(nodes) == 12
    assert {n["shop"]["slug"] for n in nodes} == {shop["slug"]}
    # one batch for the whole page (besides the listing's own check that the shop exists)
    batches = [s for s in reads(list(counter.statements), "shops") if "shops.id IN" in s]
    assert len(batches) == 1, counter.statements
