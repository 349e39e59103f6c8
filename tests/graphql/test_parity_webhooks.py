"""REST parity, webhooks: a shop's owners subscribe, list and delete endpoints through
GraphQL with WebhookService's rules (the secret shown once, the per-shop cap); staff,
customers and the anonymous may not."""

from __future__ import annotations

import uuid

from tests.graphql.support import codes, data, gql
from tests.support.factories import V1, Api, shop_with_staff

CREATE = """
mutation($shop: UUID!, $url: String!, $events: [WebhookEvent!]!) {
  createWebhookEndpoint(shopId: $shop, url: $url, events: $events) {
    secret endpoint { id shopId url events isActive disabledReason createdAt }
  }
}
"""
LIST = """
query($shop: UUID!) { webhookEndpoints(shopId: $shop) { id url events isActive } }
"""
DELETE = "mutation($shop: UUID!, $id: UUID!) { deleteWebhookEndpoint(shopId: $shop, id: $id) }"


async def test_webhook_endpoints_owner_only(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    variables = {
        "shop": shop["id"],
        "url": "https://hooks.example.com/storefront",
        "events": ["ORDER_PLACED", "ORDER_EXPIRED"],
    }
    assert codes(await gql(api.client, CREATE, variables)) == ["unauthenticated"]
    for caller in (staff, customer):
        assert codes(await gql(api.client, CREATE, variables, user=caller)) == ["forbidden"]
        listed = await gql(api.client, LIST, {"shop": shop["id"]}, user=caller)
        assert codes(listed) == ["forbidden"]
    unknown = {**variables, "shop": str(uuid.uuid4())}
    assert codes(await gql(api.client, CREATE, unknown, user=owner)) == ["not-found"]

    created = data(await gql(api.client, CREATE, variables, user=owner))["createWebhookEndpoint"]
    assert created["secret"].startswith("whsec_")
    endpoint = created["endpoint"]
    assert sorted(endpoint["events"]) == ["ORDER_EXPIRED", "ORDER_PLACED"]
    assert endpoint["isActive"] is True
    listed = data(await gql(api.client, LIST, {"shop": shop["id"]}, user=owner))
    assert [e["id"] for e in listed["webhookEndpoints"]] == [endpoint["id"]]
    assert "secret" not in listed["webhookEndpoints"][0]
    rest = await api.client.get(f"{V1}/shops/{shop['id']}/webhooks", headers=owner.auth)
    assert [e["id"] for e in rest.json()] == [endpoint["id"]]
    # the REST schema's validation: no events
    none = await gql(api.client, CREATE, {**variables, "events": []}, user=owner)
    assert codes(none) == ["validation-error"]

    removal = {"shop": shop["id"], "id": endpoint["id"]}
    assert codes(await gql(api.client, DELETE, removal, user=staff)) == ["forbidden"]
    assert data(await gql(api.client, DELETE, removal, user=owner))["deleteWebhookEndpoint"]
    assert codes(await gql(api.client, DELETE, removal, user=owner)) == ["not-found"]
    listed = data(await gql(api.client, LIST, {"shop": shop["id"]}, user=owner))
    assert listed["webhookEndpoints"] == []
