"""/graphql against the same services as REST: public catalog reads, orders as staff and
as customers, the same authorization (someone else's order is not found), errors with the
RFC 9457 slugs as ``extensions.code`` and never a stack trace."""

from __future__ import annotations

from typing import Any

from tests.graphql.support import codes, data, gql
from tests.support.factories import V1, Api, shop_with_staff

PRODUCTS = """
query Products($shop: UUID!, $first: Int, $after: String) {
  products(shopId: $shop, first: $first, after: $after) {
    edges { cursor node { id sku name price stock version createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

ORDERS = """
query Orders($shop: UUID!, $first: Int) {
  orders(shopId: $shop, first: $first) {
    nodes {
      id status total customerId
      shop { id slug }
      lines { sku quantity unitPrice lineTotal product { id name stock } }
      payments { id status }
    }
    pageInfo { hasNextPage }
  }
}
"""

ORDER = """
query Order($shop: UUID!, $id: UUID!) { order(shopId: $shop, id: $id) { id status } }
"""


async def test_products_are_a_relay_connection_with_money_and_datetime_scalars(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    made = [await api.product(staff, shop, price_cents=1250, currency="EUR") for _ in range(3)]

    first = data(await gql(api.client, PRODUCTS, {"shop": shop["id"], "first": 2}))["products"]
    assert [e["node"]["id"] for e in first["edges"]] == sorted(p["id"] for p in made)[:2]
    assert first["pageInfo"] == {"hasNextPage": True, "endCursor": first["edges"][-1]["cursor"]}
    node = first["edges"][0]["node"]
    assert node["price"] == {"cents": 1250, "currency": "EUR"}
    assert node["createdAt"].endswith("Z")

    after = first["pageInfo"]["endCursor"]
    rest = data(await gql(api.client, PRODUCTS, {"shop": shop["id"], "after": after}))["products"]
    assert [e["node"]["id"] for e in rest["edges"]] == sorted(p["id"] for p in made)[2:]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_bad_arguments_are_errors_with_the_rest_slugs(api: Api) -> None:
    _owner, _staff, shop = await shop_with_staff(api)
    body = await gql(api.client, PRODUCTS, {"shop": shop["id"], "first": 101})
    assert codes(body) == ["unprocessable-entity"]
    body = await gql(api.client, PRODUCTS, {"shop": shop["id"], "after": "not-a-cursor"})
    assert codes(body) == ["invalid-cursor"]
    body = await gql(api.client, '{ shop(id: "00000000-0000-0000-0000-000000000000") { id } }')
    assert codes(body) == ["not-found"]
    assert body["data"] == {"shop": None}


async def test_orders_with_lines_products_shop_and_payments(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=500, currency="EUR", stock=10)
    customer = await api.user()
    placed = await api.order(customer, shop, (product, 3))

    orders = data(await gql(api.client, ORDERS, {"shop": shop["id"]}, user=staff))["orders"]
    (order,) = orders["nodes"]
    assert order["id"] == placed["id"]
    assert order["status"] == "PENDING"
    assert order["total"] == {"cents": 1500, "currency": "EUR"}
    assert order["customerId"] == customer.id
    assert order["shop"] == {"id": shop["id"], "slug": shop["slug"]}
    assert order["lines"] == [
        {
            "sku": product["sku"],
            "quantity": 3,
            "unitPrice": {"cents": 500, "currency": "EUR"},
            "lineTotal": {"cents": 1500, "currency": "EUR"},
            "product": {"id": product["id"], "name": product["name"], "stock": 7},
        }
    ]
    assert order["payments"] == []


async def test_authorization_is_rests(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    alice, bob = await api.user(), await api.user()
    alices = await api.order(alice, shop, (product, 1))
    bobs = await api.order(bob, shop, (product, 1))

    def ids(body: dict[str, Any]) -> set[str]:
        return {o["id"] for o in data(body)["orders"]["nodes"]}

    # staff see every order, a customer their own
    assert ids(await gql(api.client, ORDERS, {"shop": shop["id"]}, user=owner)) == {
        alices["id"],
        bobs["id"],
    }
    assert ids(await gql(api.client, ORDERS, {"shop": shop["id"]}, user=alice)) == {alices["id"]}
    # someone else's order: not found (never forbidden), as REST's 404
    body = await gql(api.client, ORDER, {"shop": shop["id"], "id": bobs["id"]}, user=alice)
    assert codes(body) == ["not-found"]
    rest = await api.client.get(f"{V1}/shops/{shop['id']}/orders/{bobs['id']}", headers=alice.auth)
    assert rest.status_code == 404
    # anonymous: unauthenticated
    body = await gql(api.client, ORDER, {"shop": shop["id"], "id": bobs["id"]})
    assert codes(body) == ["unauthenticated"]
    # a bad token is REST's 401 problem, before any GraphQL runs
    r = await api.client.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_viewer_and_memberships(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    query = "{ viewer { id isAdmin memberships { nodes { role shop { id } } } } }"
    viewer = data(await gql(api.client, query, user=staff))["viewer"]
    assert viewer["id"] == staff.id
    assert viewer["isAdmin"] is False
    assert viewer["memberships"]["nodes"] == [{"role": "STAFF", "shop": {"id": shop["id"]}}]
    assert codes(await gql(api.client, query)) == ["unauthenticated"]
    del owner


async def test_an_unexpected_error_is_masked(api: Api) -> None:
    """A resolver that fails unexpectedly answers internal-error with no detail."""
    _owner, staff, shop = await shop_with_staff(api)
    resources = api.client  # noqa: F841 - the app's own resources below
    app_resources = api.resources
    assert app_resources is not None
    original = app_resources.cache

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("secret internals: /srv/db password=hunter2")

    object.__setattr__(app_resources, "cache", Broken())
    try:
        body = await gql(api.client, PRODUCTS, {"shop": shop["id"]})
    finally:
        object.__setattr__(app_resources, "cache", original)
    assert codes(body) == ["internal-error"]
    text = str(body)
    assert "hunter2" not in text
    assert "Traceback" not in text
    del staff
