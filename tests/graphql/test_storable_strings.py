"""Text the database cannot store is refused at the GraphQL edge too (decision 0095): NUL or
a lone surrogate anywhere in an operation's variables or string literals is a
``validation-error`` (422) before anything runs. ``products(q: "a\\u0000b")`` reached
PostgreSQL and came back as an internal error (through GraphQL)."""

from __future__ import annotations

from typing import Any

from graphql import parse
from storefront.graphql.storable import unstorable_strings
from tests.graphql.support import codes, data, gql
from tests.graphql.test_mutations import CREATE, product_input
from tests.support.factories import Api, shop_with_staff

SEARCH = """
query Search($shop: UUID!, $q: String, $category: String) {
  products(shopId: $shop, q: $q, category: $category) { edges { node { id } } }
}
"""

NUL_MESSAGE = "Value error, must not contain the NUL character (U+0000)"


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert codes(body) == ["validation-error"], body
    (error,) = body["errors"]
    assert error["extensions"]["status"] == 422
    found: list[dict[str, Any]] = error["extensions"]["errors"]
    return found


async def test_nul_in_a_search_variable_is_a_validation_error(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    for name in ("q", "category"):
        body = await gql(api.client, SEARCH, {"shop": shop["id"], name: "a\x00b"})
        assert body["data"] is None
        assert _errors(body) == [
            {"loc": ["variables", name], "msg": NUL_MESSAGE, "type": "value_error"}
        ]
        assert "a\x00b" not in str(body)  # never echoed


async def test_nul_in_a_string_literal_is_a_validation_error(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    query = 'query { products(shopId: "%s", q: "a\\u0000b") { edges { node { id } } } }'
    body = await gql(api.client, query % shop["id"])
    assert [e["loc"][0] for e in _errors(body)] == ["document"]


async def test_nul_deep_in_an_input_changes_nothing(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    variables = {"shop": shop["id"], "input": product_input(name="mug\x00")}
    body = await gql(api.client, CREATE, variables, user=staff)
    assert _errors(body) == [
        {"loc": ["variables", "input", "name"], "msg": NUL_MESSAGE, "type": "value_error"}
    ]
    listing = data(await gql(api.client, SEARCH, {"shop": shop["id"]}))["products"]
    assert listing["edges"] == []


async def test_other_control_characters_still_pass(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    body = await gql(api.client, SEARCH, {"shop": shop["id"], "q": "tab\there"})
    assert data(body)["products"]["edges"] == []


def test_every_string_of_the_request_is_looked_at() -> None:
    # (a lone surrogate cannot be written in a literal: graphql-core's lexer refuses it)
    document = parse('query { a(x: "ok", y: "b\\u0000") { b(z: "\\u0000") } }')
    variables = {"ok": ["fine", {"k\x00": 1, "deep": [None, "x\ud800"]}]}
    found = unstorable_strings(document, variables)
    assert [e["loc"][:3] for e in found] == [
        ["variables", "ok", 1],
        ["variables", "ok", 1],
        ["document", 1, 23],
        ["document", 1, 41],
    ]
    assert found[0]["loc"][3] == "(key)"
    assert found[1]["loc"][3:] == ["deep", 1]
    assert "surrogate" in found[1]["msg"]
    assert unstorable_strings(parse("query { a }"), {"q": "fine\ttext"}) == []
