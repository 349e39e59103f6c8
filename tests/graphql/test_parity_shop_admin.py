"""REST parity, running a shop: the catalog summary, bulk upsert, hold limits, sales and the
shop's audit log through GraphQL, with REST's readers (the authorization matrix owner /
staff / customer / other / anonymous) and REST's answers."""

from __future__ import annotations

import uuid
from typing import Any

from storefront.sales import SALES_PROJECTION
from tests.graphql.support import codes, data, gql
from tests.graphql.test_mutations import product_input
from tests.support.events import eventually, relayed_and_consumed
from tests.support.factories import V1, Api, UserHandle, shop_with_staff

SUMMARY = """
query($shop: UUID!) {
  catalogSummary(shopId: $shop) {
    shopId products categories { category currency products inStock unitsInStock minPrice maxPrice }
  }
}
"""
BULK = """
mutation($shop: UUID!, $items: [ProductInput!]!) {
  bulkUpsertProducts(shopId: $shop, items: $items) { created updated }
}
"""
LIMITS = """
query($shop: UUID!) {
  orderLimits(shopId: $shop) {
    shopId maxLineQuantity maxOrderUnits maxPendingUnits maxPendingStockPercent
    stockShareFloorUnits paymentWindowMinutes shopSet
  }
}
"""
SET_LIMITS = """
mutation($shop: UUID!, $input: OrderLimitsInput!) {
  updateOrderLimits(shopId: $shop, input: $input) { maxLineQuantity maxOrderUnits shopSet }
}
"""
SALES = """
query($shop: UUID!, $from: Date, $to: Date) {
  sales(shopId: $shop, from: $from, to: $to) {
    shopId from to days { day currency ordersPlaced placed ordersPaid revenue refunded }
  }
}
"""
AUDIT = """
query($shop: UUID!, $first: Int, $after: String) {
  shopAuditEvents(shopId: $shop, first: $first, after: $after) {
    edges { cursor node { seq action actorRole actorId objectType details hash prevHash } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def _callers(api: Api) -> tuple[UserHandle, UserHandle, UserHandle, dict[str, Any]]:
    owner, staff, shop = await shop_with_staff(api)
    return owner, staff, await api.user(), shop


async def test_catalog_summary_and_bulk_upsert(api: Api) -> None:
    owner, staff, customer, shop = await _callers(api)
    items = [product_input(category="mugs"), product_input(category="mugs", stock=0)]
    variables = {"shop": shop["id"], "items": items}
    assert codes(await gql(api.client, BULK, variables)) == ["unauthenticated"]
    assert codes(await gql(api.client, BULK, variables, user=customer)) == ["forbidden"]
    unknown = {**variables, "shop": str(uuid.uuid4())}
    assert codes(await gql(api.client, BULK, unknown, user=owner)) == ["not-found"]
    done = data(await gql(api.client, BULK, variables, user=staff))["bulkUpsertProducts"]
    assert done == {"created": 2, "updated": 0}
    again = data(await gql(api.client, BULK, variables, user=owner))["bulkUpsertProducts"]
    assert again == {"created": 0, "updated": 2}
    # the REST schema's rule: a sku twice in one batch
    twice = {"shop": shop["id"], "items": [items[0], items[0]]}
    assert codes(await gql(api.client, BULK, twice, user=staff)) == ["validation-error"]

    # the summary is public, the same answer as REST's
    summary = data(await gql(api.client, SUMMARY, {"shop": shop["id"]}))["catalogSummary"]
    rest = (await api.client.get(f"{V1}/shops/{shop['id']}/catalog/summary")).json()
    assert summary["products"] == rest["products"] == 2
    (mugs,) = summary["categories"]
    assert mugs["inStock"] == rest["categories"][0]["in_stock"] == 1
    assert mugs["minPrice"] == {"cents": 1299, "currency": "EUR"}
    missing = await gql(api.client, SUMMARY, {"shop": str(uuid.uuid4())})
    assert codes(missing) == ["not-found"]


async def test_order_limits_read_by_anyone_signed_in_changed_by_staff(api: Api) -> None:
    owner, staff, customer, shop = await _callers(api)
    variables = {"shop": shop["id"]}
    assert codes(await gql(api.client, LIMITS, variables)) == ["unauthenticated"]
    limits = data(await gql(api.client, LIMITS, variables, user=customer))["orderLimits"]
    rest = await api.client.get(f"{V1}/shops/{shop['id']}/order-limits", headers=customer.auth)
    assert limits["maxLineQuantity"] == rest.json()["max_line_quantity"]
    assert limits["shopSet"] == []

    change = {"shop": shop["id"], "input": {"maxLineQuantity": 3}}
    assert codes(await gql(api.client, SET_LIMITS, change, user=customer)) == ["forbidden"]
    changed = data(await gql(api.client, SET_LIMITS, change, user=staff))["updateOrderLimits"]
    assert changed["maxLineQuantity"] == 3
    assert changed["shopSet"] == ["max_line_quantity"]
    # null: back to the platform default; a field left out stays
    reset = {"shop": shop["id"], "input": {"maxLineQuantity": None, "maxOrderUnits": 7}}
    changed = data(await gql(api.client, SET_LIMITS, reset, user=owner))["updateOrderLimits"]
    assert changed["maxLineQuantity"] == limits["maxLineQuantity"]
    assert changed["shopSet"] == ["max_order_units"]
    bad = {"shop": shop["id"], "input": {"maxLineQuantity": 0}}
    assert codes(await gql(api.client, SET_LIMITS, bad, user=owner)) == ["validation-error"]


async def test_sales_for_owners_and_staff_not_found_for_others(api: Api) -> None:
    owner, staff, customer, shop = await _callers(api)
    product = await api.product(staff, shop, stock=5)
    await api.order(customer, shop, (product, 2))
    resources = api.resources
    assert resources is not None
    await eventually(
        lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
        bool,
        what="events relayed and consumed",
    )
    variables = {"shop": shop["id"]}
    assert codes(await gql(api.client, SALES, variables)) == ["unauthenticated"]
    for caller in (customer, await api.user()):  # as REST: not-found, never forbidden
        assert codes(await gql(api.client, SALES, variables, user=caller)) == ["not-found"]
    for caller in (owner, staff):
        sales = data(await gql(api.client, SALES, variables, user=caller))["sales"]
        (day,) = sales["days"]
        assert day["ordersPlaced"] == 1
        assert day["placed"]["cents"] == 2 * product["price_cents"]
    backwards = {**variables, "from": "2026-02-01", "to": "2026-01-01"}
    assert codes(await gql(api.client, SALES, backwards, user=owner)) == ["invalid-date-range"]


async def test_shop_audit_events_for_owners_minimised_as_rest(api: Api) -> None:
    owner, staff, customer, shop = await _callers(api)
    await api.product(staff, shop)
    variables = {"shop": shop["id"], "first": 1}
    assert codes(await gql(api.client, AUDIT, variables)) == ["unauthenticated"]
    for caller in (staff, customer):
        assert codes(await gql(api.client, AUDIT, variables, user=caller)) == ["forbidden"]
    unknown = {**variables, "shop": str(uuid.uuid4())}
    assert codes(await gql(api.client, AUDIT, unknown, user=owner)) == ["not-found"]

    rest = await api.client.get(f"{V1}/shops/{shop['id']}/audit-events", headers=owner.auth)
    expected = rest.json()["items"]
    seen: list[dict[str, Any]] = []
    after = None
    while True:  # one entry a page, newest first, to the end
        page = data(await gql(api.client, AUDIT, {**variables, "after": after}, user=owner))[
            "shopAuditEvents"
        ]
        seen += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [e["seq"] for e in seen] == [e["seq"] for e in expected]
    assert [e["actorRole"] for e in seen] == [e["actor_role"] for e in expected]
    assert [e["hash"] for e in seen] == [e["hash"] for e in expected]
