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
from tests.support.privacy import CONSENTS, EXPORTS, request_export, wait_for_export

GENEROUS = {"auth_rate": "10000/minute", "auth_account_rate": "10000/minute"}


@asynccontextmanager
async def limited(database_url: str, **protection: str) -> AsyncIterator[Api]:
    """An app of its own with these budgets (tables emptied afterwards); its users are made
    through the identity service, spending no sign-in budget."""
    app = create_app(make_settings(database_url, protection={**GENEROUS, **protection}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                yield Api(client, app.state.resources)
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
    async with limited(database_url, expensive_rate="2/hour") as api:
        client = api.client
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


async def test_data_export_spends_the_expensive_budget_rest_spends(database_url: str) -> None:
    async with limited(database_url, expensive_rate="2/hour") as api:
        user = await api.user()
        first = await request_export(api.client, user)
        body = data(await gql(api.client, "mutation { requestDataExport { id } }", user=user))
        assert refused(await gql(api.client, "mutation { requestDataExport { id } }", user=user))
        assert (await api.client.post(EXPORTS, headers=user.auth)).status_code == 429
        # let the jobs finish before the tables are emptied
        for export_id in (first["id"], body["requestDataExport"]["id"]):
            await wait_for_export(api.client, user, export_id)


SET_CONSENTS = """
mutation($granted: Boolean!) {
  setConsents(consents: [{purpose: "marketing_email", granted: $granted}]) {
    purposes { purpose granted }
  }
}
"""


async def test_set_consents_spends_the_consents_budget_rest_spends(database_url: str) -> None:
    async with limited(database_url, consent_rate="2/minute") as api:
        user = await api.user()
        rest = await api.client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
        assert rest.status_code == 200, rest.text
        data(await gql(api.client, SET_CONSENTS, {"granted": False}, user=user))
        assert refused(await gql(api.client, SET_CONSENTS, {"granted": True}, user=user))
        again = await api.client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
        assert again.status_code == 429


CHANGE = """
mutation($current: String!) {
  changePassword(currentPassword: $current, newPassword: "a-long-new-passphrase")
}
"""


async def test_password_change_spends_the_auth_budget_rest_spends(database_url: str) -> None:
    async with limited(database_url, auth_rate="2/minute") as api:
        user = await api.user()
        wrong = {"current_password": "not-my-password", "new_password": "a-long-new-passphrase"}
        rest = await api.client.post(f"{V1}/auth/password", json=wrong, headers=user.auth)
        assert rest.status_code == 403, rest.text
        body = await gql(api.client, CHANGE, {"current": "not-my-password"}, user=user)
        assert codes(body) == ["forbidden"]
        assert refused(await gql(api.client, CHANGE, {"current": "not-my-password"}, user=user))
        again = await api.client.post(f"{V1}/auth/password", json=wrong, headers=user.auth)
        assert again.status_code == 429
