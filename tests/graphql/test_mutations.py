"""Mutations through the same services and rules as REST: product create and update with
optimistic concurrency, placing an order with an idempotency key (the header's semantics,
and the same stored operation), cancelling, paying."""

from __future__ import annotations

import uuid
from typing import Any

from tests.graphql.support import codes, data, gql
from tests.support.factories import V1, AddressInFactory, Api, shop_with_staff

CREATE = """
mutation Create($shop: UUID!, $input: ProductInput!) {
  createProduct(shopId: $shop, input: $input) { id sku price stock version }
}
"""
UPDATE = """
mutation Update($shop: UUID!, $id: UUID!, $version: Int!, $input: ProductPatchInput!) {
  updateProduct(shopId: $shop, id: $id, version: $version, input: $input) {
    id name price version
  }
}
"""
PLACE = """
mutation Place($shop: UUID!, $input: OrderInput!, $key: String!) {
  placeOrder(shopId: $shop, input: $input, idempotencyKey: $key) {
    id status total lines { quantity product { id stock } }
  }
}
"""
CANCEL = """
mutation Cancel($shop: UUID!, $order: UUID!) {
  cancelOrder(shopId: $shop, orderId: $order) { id status }
}
"""
PAY = """
mutation Pay($shop: UUID!, $order: UUID!, $key: String!) {
  payOrder(shopId: $shop, orderId: $order, paymentMethod: "pm_card_visa", idempotencyKey: $key) {
    id status
  }
}
"""


def product_input(**overrides: Any) -> dict[str, Any]:
    return {
        "sku": f"GQL-{uuid.uuid4().hex[:10]}",
        "name": "GraphQL mug",
        "price": {"cents": 1299, "currency": "EUR"},
        "stock": 5,
        "category": "kitchen",
        **overrides,
    }


def order_input(product: dict[str, Any], quantity: int) -> dict[str, Any]:
    address = AddressInFactory.build().model_dump(mode="json")
    return {
        "lines": [{"productId": product["id"], "quantity": quantity}],
        "shippingAddress": {
            "name": address["name"],
            "line1": address["line1"],
            "line2": address["line2"],
            "city": address["city"],
            "postalCode": address["postal_code"],
            "country": address["country"],
            "phone": address["phone"],
        },
    }


async def test_product_create_and_update_with_version(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    variables = {"shop": shop["id"], "input": product_input()}

    assert codes(await gql(api.client, CREATE, variables)) == ["unauthenticated"]
    assert codes(await gql(api.client, CREATE, variables, user=customer)) == ["forbidden"]
    created = data(await gql(api.client, CREATE, variables, user=staff))["createProduct"]
    assert created["price"] == {"cents": 1299, "currency": "EUR"}
    assert created["version"] == 1
    # the same rules as REST: a duplicate sku is a conflict
    assert codes(await gql(api.client, CREATE, variables, user=owner)) == ["conflict"]
    # the domain's schema validates the input: no echo of it
    bad = {"shop": shop["id"], "input": product_input(sku="no spaces allowed")}
    body = await gql(api.client, CREATE, bad, user=staff)
    assert codes(body) == ["validation-error"]
    assert body["errors"][0]["extensions"]["errors"][0]["loc"] == ["sku"]

    change = {"name": "Renamed", "price": {"cents": 999, "currency": "EUR"}}
    update = {"shop": shop["id"], "id": created["id"], "version": 1, "input": change}
    updated = data(await gql(api.client, UPDATE, update, user=staff))["updateProduct"]
    assert updated["version"] == 2
    assert updated["name"] == "Renamed"
    assert updated["price"] == {"cents": 999, "currency": "EUR"}
    # an update against the version read before: refused, nothing changed
    body = await gql(api.client, UPDATE, {**update, "input": {"stock": 1}}, user=staff)
    assert codes(body) == ["precondition-failed"]
    assert body["errors"][0]["extensions"]["current_version"] == 2
    rest = await api.client.get(f"{V1}/shops/{shop['id']}/products/{created['id']}")
    assert rest.json()["stock"] == 5
    assert rest.json()["version"] == 2


async def test_place_order_is_idempotent_by_key_as_with_the_header(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    customer = await api.user()
    key = str(uuid.uuid4())
    variables = {"shop": shop["id"], "input": order_input(product, 3), "key": key}

    first = data(await gql(api.client, PLACE, variables, user=customer))["placeOrder"]
    assert first["status"] == "PENDING"
    assert first["lines"] == [{"quantity": 3, "product": {"id": product["id"], "stock": 7}}]
    again = data(await gql(api.client, PLACE, variables, user=customer))["placeOrder"]
    assert again["id"] == first["id"]
    assert again["lines"][0]["product"]["stock"] == 7  # stock taken once

    # the same key with other input: refused, as with the header
    other = {**variables, "input": order_input(product, 1)}
    assert codes(await gql(api.client, PLACE, other, user=customer)) == ["idempotency-key-reused"]
    # the same operation through REST with the same key: the same order, replayed
    r = await api.place_order(customer, shop, (product, 3), key=key)
    assert r.status_code == 201, r.text
    assert r.headers.get("Idempotent-Replayed") == "true"
    assert r.json()["id"] == first["id"]
    # a blank key is the missing header's error
    blank = {**variables, "key": "  "}
    assert codes(await gql(api.client, PLACE, blank, user=customer)) == ["idempotency-key-missing"]
    # not enough stock: the domain's own slug
    big = {"shop": shop["id"], "input": order_input(product, 8), "key": str(uuid.uuid4())}
    assert codes(await gql(api.client, PLACE, big, user=customer)) == ["insufficient-stock"]


async def test_cancel_order_follows_the_rest_rules(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    alice, bob = await api.user(), await api.user()
    order = await api.order(alice, shop, (product, 2))
    variables = {"shop": shop["id"], "order": order["id"]}

    # someone else's order: not found, never forbidden
    assert codes(await gql(api.client, CANCEL, variables, user=bob)) == ["not-found"]
    cancelled = data(await gql(api.client, CANCEL, variables, user=alice))["cancelOrder"]
    assert cancelled == {"id": order["id"], "status": "CANCELLED"}
    assert codes(await gql(api.client, CANCEL, variables, user=alice)) == ["invalid-transition"]
    rest = await api.client.get(f"{V1}/shops/{shop['id']}/products/{product['id']}")
    assert rest.json()["stock"] == 10  # released


async def test_pay_order_without_a_provider_is_payments_unavailable(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    customer = await api.user()
    order = await api.order(customer, shop, (product, 1))
    variables = {"shop": shop["id"], "order": order["id"], "key": str(uuid.uuid4())}
    assert api.resources is not None
    assert api.resources.stripe is None  # the tests' settings name no provider
    body = await gql(api.client, PAY, variables, user=customer)
    assert codes(body) == ["payments-unavailable"]
    orders = """query($shop: UUID!, $id: UUID!) {
      order(shopId: $shop, id: $id) { status payments { id } } }"""
    got = data(
        await gql(api.client, orders, {"shop": shop["id"], "id": order["id"]}, user=customer)
    )
    assert got["order"] == {"status": "PENDING", "payments": []}
