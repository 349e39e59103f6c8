"""Anonymous catalog queries from the response cache (decision 0167): a repeat runs no SQL,
every write REST's cached reads are invalidated by invalidates it too, and nothing signed in,
private or failed is filed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLNamedType, GraphQLObjectType, get_named_type
from storefront.graphql.public_cache import PUBLIC_ROOTS, PUBLIC_TYPES, plan_of
from storefront.graphql.schema import build_schema
from storefront.resources import Resources
from tests.conftest import QueryCounter
from tests.graphql.support import codes, data, gql
from tests.support.factories import Api, shop_with_staff

Counter = Callable[[], QueryCounter]

CATALOG = """
query Catalog($shop: UUID!, $id: UUID!) {
  shop(id: $shop) { id name }
  products(shopId: $shop, first: 10) {
    nodes { id name stock version shop { slug } }
    pageInfo { hasNextPage endCursor }
  }
  product(shopId: $shop, id: $id) { id name stock }
}
"""


async def _statements(counter: QueryCounter, call: Any) -> tuple[dict[str, Any], int]:
    counter.reset()
    body = await call
    return body, len(counter.statements)


async def test_a_repeat_runs_no_sql_and_a_write_invalidates_it(
    api: Api, count_queries: Counter
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=50)
    variables = {"shop": shop["id"], "id": product["id"]}
    counter = count_queries()

    first, sql = await _statements(counter, gql(api.client, CATALOG, variables))
    assert sql > 0
    again, sql = await _statements(counter, gql(api.client, CATALOG, variables))
    assert sql == 0, counter.statements
    assert again == first
    # other variables are another entry
    _other, sql = await _statements(
        counter, gql(api.client, CATALOG, {**variables, "id": shop["id"]})
    )
    assert sql > 0

    # a product update (GraphQL) shows at once, in the listing and the product
    update = """mutation($shop: UUID!, $id: UUID!, $v: Int!) {
      updateProduct(shopId: $shop, id: $id, version: $v, input: {name: "Renamed"}) { version } }"""
    version = data(first)["products"]["nodes"][0]["version"]
    data(await gql(api.client, update, {**variables, "v": version}, user=staff))
    after = data(await gql(api.client, CATALOG, variables))
    assert after["product"]["name"] == "Renamed"
    assert after["products"]["nodes"][0]["name"] == "Renamed"

    # an order through REST reserves stock: the catalog's generation moves, as for REST
    await api.order(await api.user(), shop, (product, 3))
    after = data(await gql(api.client, CATALOG, variables))
    assert after["product"]["stock"] == 47
    assert after["products"]["nodes"][0]["stock"] == 47
    # and a REST read sees the same
    rest = await api.client.get(f"/api/v1/shops/{shop['id']}/products/{product['id']}")
    assert rest.json()["stock"] == 47


async def test_signed_in_private_and_failed_answers_are_not_filed(
    api: Api, count_queries: Counter, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    variables = {"shop": shop["id"], "id": product["id"]}
    counter = count_queries()
    # a signed-in caller: never from the cache (an answer could hold what only they see)
    for _ in range(2):
        _body, sql = await _statements(counter, gql(api.client, CATALOG, variables, user=staff))
        assert sql > 0
    # a private root field beside public ones: the whole query runs, nothing filed
    mixed = """query($shop: UUID!) { shop(id: $shop) { id }
      orders(shopId: $shop) { nodes { id } } }"""
    stats = resources.cache.stats
    for _ in range(2):
        filled, hits = stats.misses, stats.hits_l1 + stats.hits_l2
        body = await gql(api.client, mixed, {"shop": shop["id"]})
        assert codes(body) == ["unauthenticated"]
        assert (stats.misses, stats.hits_l1 + stats.hits_l2) == (filled, hits)
    # an answer with errors (no such shop) is not filed
    missing = "query($s: UUID!) { shop(id: $s) { id } }"
    for _ in range(2):
        body, sql = await _statements(counter, gql(api.client, missing, {"s": product["id"]}))
        assert codes(body) == ["not-found"]
        assert sql > 0


def test_only_public_documents_have_a_plan() -> None:
    assert plan_of("{ products(shopId: $s) { nodes { id } } }") is not None
    assert plan_of("query { ... on Query { shop(id: $s) { name } } }") is not None
    assert plan_of("{ viewer { id } }") is None
    assert plan_of("mutation { archiveProduct(shopId: $s, id: $i) { id } }") is None
    assert plan_of("query A { shop(id: $s) { id } } query B { shop(id: $s) { id } }") is None
    assert plan_of("query { ...F } fragment F on Query { viewer { id } }") is None
    assert plan_of("query { ...F } fragment F on Query { ...F }") is None
    assert plan_of("{ products(") is None


def test_public_roots_lead_only_to_public_types() -> None:
    """Everything reachable from the cached root fields is public (a private field added
    to Product or Shop, or a new type under them, must be looked at here first)."""
    schema = build_schema()._schema
    query = schema.query_type
    assert query is not None
    seen: set[str] = set()
    todo: list[GraphQLNamedType] = [
        get_named_type(query.fields[name].type) for name in sorted(PUBLIC_ROOTS)
    ]
    while todo:
        named = todo.pop()
        if named.name in seen or not isinstance(named, GraphQLObjectType):
            continue
        seen.add(named.name)
        todo += [get_named_type(field.type) for field in named.fields.values()]
    assert seen == set(PUBLIC_TYPES)
