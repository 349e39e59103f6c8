"""Persisted queries: a registered operation by its hash alone; an unknown hash, or a query
that does not match its hash, refused; with persisted_only, ad-hoc queries refused and
registered ones (by hash or by text) served."""

from __future__ import annotations

from typing import Any

from storefront.graphql.persisted import registered, sha256
from storefront.graphql.schema import build_schema
from storefront.settings import GraphQLSettings
from tests.graphql.support import codes, data
from tests.support.factories import Api, shop_with_staff


def by_name(name: str) -> tuple[str, str]:
    for digest, text in registered().items():
        if f" {name}(" in text:
            return digest, text
    raise AssertionError(f"{name} is not registered")


def persisted(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def test_a_registered_query_by_its_hash_alone(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    digest, _text = by_name("ProductPage")
    r = await api.client.post(
        "/graphql",
        json={"variables": {"shopId": shop["id"], "first": 5}, "extensions": persisted(digest)},
    )
    assert r.status_code == 200, r.text
    nodes = [e["node"]["id"] for e in data(r.json())["products"]["edges"]]
    assert nodes == [product["id"]]

    r = await api.client.post("/graphql", json={"extensions": persisted("0" * 64)})
    assert codes(r.json()) == ["persisted-query-not-found"]
    r = await api.client.post(
        "/graphql", json={"query": "{ __typename }", "extensions": persisted(digest)}
    )
    assert codes(r.json()) == ["persisted-query-mismatch"]


async def test_persisted_only_refuses_ad_hoc_queries() -> None:
    schema = build_schema(GraphQLSettings(persisted_only=True))
    refused = await schema.execute("{ __typename }")
    assert refused.errors is not None
    assert [e.extensions["code"] for e in refused.errors] == ["persisted-query-required"]  # type: ignore[index]
    digest, text = by_name("ProductPage")
    assert sha256(text) == digest
    # the registered text itself passes the check (it runs, and fails later for want of
    # an application context here, not for being unregistered)
    served = await schema.execute(
        text, variable_values={"shopId": "00000000-0000-0000-0000-000000000000"}
    )
    assert served.errors is not None
    served_codes = [(e.extensions or {}).get("code") for e in served.errors]
    assert "persisted-query-required" not in served_codes
    assert served_codes == ["internal-error"]


def test_every_registered_operation_is_valid_against_the_schema() -> None:
    from graphql import parse, validate

    schema = build_schema()._schema
    assert len(registered()) >= 3
    for text in registered().values():
        assert validate(schema, parse(text)) == [], text


async def test_operations_are_counted_by_registered_name_only(api: Api) -> None:
    from storefront.graphql.observability import OPERATIONS

    def count(operation: str) -> float:
        return float(
            OPERATIONS.labels(operation=operation, type="query", outcome="ok")._value.get()
        )

    _owner, _staff, shop = await shop_with_staff(api)
    digest, _text = by_name("ProductPage")
    before_known, before_other = count("ProductPage"), count("other")
    r = await api.client.post(
        "/graphql", json={"variables": {"shopId": shop["id"]}, "extensions": persisted(digest)}
    )
    data(r.json())
    r = await api.client.post("/graphql", json={"query": "query MadeUpName { __typename }"})
    data(r.json())
    assert count("ProductPage") == before_known + 1
    assert count("other") == before_other + 1
    assert count("MadeUpName") == 0
