"""Every bound with a hostile document (decision 0146): deep nesting, alias bombing,
fragment cycles, a huge `first`, too many tokens, an oversized query; introspection off
where the setting says so. Each is refused before any resolver runs."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from storefront.graphql.schema import build_schema
from storefront.settings import GraphQLSettings
from tests.graphql.support import codes, gql
from tests.support.factories import Api, shop_with_staff
from tests.support.problems import assert_problem


async def test_deep_nesting_is_refused(api: Api) -> None:
    # the schema has no cycles deep enough: nest inline fragments-free selections through
    # orders -> nodes -> lines -> product, then pad with __typename-free fields on a deep path
    query = '{ orders(shopId: "%s") { edges { node { lines { product { id } } } } } }'
    _owner, staff, shop = await shop_with_staff(api)
    # 6 levels: within the default bound of 10
    assert codes(await gql(api.client, query % shop["id"], user=staff)) == []
    schema = build_schema(GraphQLSettings(max_depth=5))
    result = await schema.execute(query % shop["id"])
    assert result.errors is not None
    assert [e.extensions["code"] for e in result.errors] == ["query-too-deep"]  # type: ignore[index]


async def test_alias_bombing_is_refused(api: Api) -> None:
    aliases = " ".join(f"a{i}: __typename" for i in range(16))
    body = await gql(api.client, f"{{ {aliases} }}")
    assert codes(body) == ["too-many-aliases"]
    assert body["data"] is None
    few = " ".join(f"a{i}: __typename" for i in range(3))
    assert codes(await gql(api.client, f"{{ {few} }}")) == []


async def test_a_huge_first_is_refused_by_cost_before_running(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    fields = " ".join(["id sku name description price stock category version"] * 1)
    query = f'{{ products(shopId: "{shop["id"]}", first: 1000000) {{ nodes {{ {fields} }} }} }}'
    body = await gql(api.client, query)
    assert codes(body) == ["query-too-complex"]
    assert body["errors"][0]["extensions"]["cost"] > body["errors"][0]["extensions"]["max_cost"]
    # a variable page size counts as the largest page
    query = """query($shop: UUID!, $n: Int) { products(shopId: $shop, first: $n) {
      nodes { id } } }"""
    assert codes(await gql(api.client, query, {"shop": shop["id"], "n": 5})) == []


async def test_fragment_cycles_are_refused(api: Api) -> None:
    query = """
    query { viewer { ...A } }
    fragment A on Viewer { id ...B }
    fragment B on Viewer { isAdmin ...A }
    """
    body = await gql(api.client, query)
    assert codes(body) == ["bad-request", "bad-request"] or codes(body) == ["bad-request"]
    assert "fragment" in body["errors"][0]["message"].lower()
    assert body["data"] is None


async def test_too_many_tokens_and_too_long_a_query_are_refused(api: Api) -> None:
    many = "{ " + " ".join("__typename" for _ in range(2100)) + " }"
    body = await gql(api.client, many)
    assert body["data"] is None
    assert body["errors"], body
    long = "{ __typename }" + " " * 10_001
    body = await gql(api.client, long)
    assert codes(body) == ["query-too-large"]


@pytest.mark.parametrize("introspection", [True, False])
async def test_introspection_follows_the_setting(introspection: bool) -> None:
    schema = build_schema(introspection=introspection)
    result = await schema.execute("{ __schema { queryType { name } } }")
    if introspection:
        assert result.errors is None
        assert result.data == {"__schema": {"queryType": {"name": "Query"}}}
    else:
        assert result.errors is not None
        assert result.data is None


async def test_introspection_is_on_outside_production(app: FastAPI, api: Api) -> None:
    assert app.state.settings.graphql_introspection is True
    body = await gql(api.client, "{ __schema { queryType { name } } }")
    assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}


async def test_a_costly_operation_spends_the_rate_limit_by_its_cost(api: Api) -> None:
    """Charged before running: 1 + 20 x (1 + 2) = 61 at 10 per call is 7 calls, 6 more
    than the middleware's one, over a budget of 5; a cheap one costs nothing extra."""
    import uuid
    from datetime import UTC, datetime

    from storefront.auth.principal import Principal
    from storefront.graphql.schema import BATCHES
    from storefront.web.graphql import GraphQLContext

    assert api.resources is not None
    _owner, _staff, shop = await shop_with_staff(api)
    schema = build_schema(GraphQLSettings(cost_per_call=10), rates=("5/minute", "5/minute"))
    caller = Principal(uuid.uuid4(), False, datetime.now(UTC), None)

    def context() -> GraphQLContext:
        return GraphQLContext(api.resources, caller, BATCHES)  # type: ignore[arg-type]

    cheap = await schema.execute("{ __typename }", context_value=context())
    assert cheap.errors is None
    query = f'{{ products(shopId: "{shop["id"]}", first: 20) {{ nodes {{ id sku }} }} }}'
    costly = await schema.execute(query, context_value=context())
    assert costly.errors is not None
    assert [e.extensions["code"] for e in costly.errors] == ["too-many-requests"]  # type: ignore[index]
    assert costly.errors[0].extensions["retry_after"] >= 1  # type: ignore[index]
    # within budget when each call buys more cost
    generous = build_schema(GraphQLSettings(cost_per_call=100), rates=("5/minute", "5/minute"))
    fine = await generous.execute(query, context_value=context())
    assert fine.errors is None, fine.errors


@pytest.mark.parametrize(
    "body",
    [
        # found in review: Python's json parser recursed past its limit (500, a
        # traceback per request) and took NaN, which the REST guard refuses (decision 0097)
        b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
        b'{"query": "{ __typename }", "variables": {"x": NaN, "y": '
        + b"[" * 40
        + b"]" * 40
        + b"}}",
        b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}",
    ],
    ids=["nested-past-the-recursion-limit", "nan-and-nested", "nested-past-the-rest-bound"],
)
async def test_a_body_the_rest_guard_refuses_is_refused_at_graphql_too(
    api: Api, body: bytes
) -> None:
    r = await api.client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    if b"NaN" in body or body.count(b"[") > 1000:
        # not JSON, or past the strict parser's own depth limit: strawberry's 400
        assert r.status_code == 400, r.text
    else:
        assert_problem(r, 422, slug="json-too-complex")
    # the same variables, within the bound and strict JSON, still run
    ok = await api.client.post(
        "/graphql",
        content=b'{"query": "{ __typename }", "variables": {"x": [[1]]}}',
        headers={"Content-Type": "application/json"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"] == {"__typename": "Query"}
