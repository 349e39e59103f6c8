"""REST parity, rate limits: a GraphQL field that does what a REST route with a budget of
its own does (``route_policy(rate=...)``: bulk upserts and exports "expensive", consent
changes "consents", a password change "auth") spends that same budget, under the same key,
so neither API is a way around the other's limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from tests.conftest import _empty_tables, make_settings
from tests.graphql.support import codes, data, gql
from tests.graphql.test_mutations import product_input
from tests.support.factories import V1, Api, ProductInFactory

GENEROUS = {"auth_rate": "10000/minute", "auth_account_rate": "10000/minute"}


@asynccontextmanager
async def limited(database_url: str, **protection: str) -> AsyncIterator[httpx2.AsyncClient]:
    """An app of its own with these budgets (tables emptied afterwards)."""
    app = create_app(make_settings(database_url, protection={**GENEROUS, **protection}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
        finally:
            await _empty_tables(app.state.resources)


BULK = """
mutation($shop: UUID!, $items: [ProductInput!]!) {
  bulkUpsertProducts(shopId: $shop, items: $items) { created updated }
}
"""


def refused(body: dict[str, Any]) -> bool:
    assert codes(body) == ["too-many-requests"], body
    return int(body["errors"][0]["extensions"]["retry_after"]) > 0


async def test_bulk_upsert_spends_the_expensive_budget_rest_spends(database_url: str) -> None:
    async with limited(database_url, expensive_rate="2/hour") as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        rest = await client.post(
            f"{V1}/shops/{shop['id']}/products/bulk",
            json={"items": [ProductInFactory.build().model_dump()]},
            headers=owner.auth,
        )
        assert rest.status_code == 200, rest.text
        variables = {"shop": shop["id"], "items": [product_input()]}
        done = data(await gql(client, BULK, variables, user=owner))["bulkUpsertProducts"]
        assert done == {"created": 1, "updated": 0}
        assert refused(await gql(client, BULK, variables, user=owner))
        # and REST's next call finds the budget spent too
        again = await client.post(
            f"{V1}/shops/{shop['id']}/products/bulk",
            json={"items": [ProductInFactory.build().model_dump()]},
            headers=owner.auth,
        )
        assert again.status_code == 429
