"""REST parity, the caller's privacy rights through GraphQL: data exports (requested here,
followed here, downloaded from the REST link given), consents (read with history,
changed), erasing the account (a recent sign-in needed, as DELETE /users/me)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from storefront.resources import Resources
from tests.graphql.support import codes, data, gql
from tests.support.factories import Api, UserHandle
from tests.support.privacy import ME, bearer, stale_token

REQUEST = "mutation { requestDataExport { id status } }"
EXPORT = """
query($id: UUID!) {
  viewer { dataExport(id: $id) { id status requestedAt expiresAt sizeBytes downloadUrl } }
}
"""
CONSENTS = """
query($first: Int, $after: String) {
  viewer { consents(historyFirst: $first, historyAfter: $after) {
    purposes { purpose description granted updatedAt }
    history { purpose granted recordedAt source }
    historyNextCursor
  } }
}
"""
SET = """
mutation($consents: [ConsentInput!]!) {
  setConsents(consents: $consents) { purposes { purpose granted } history { purpose granted } }
}
"""
ERASE = "mutation { eraseAccount }"


async def _ready(api: Api, user: UserHandle, export_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body = data(await gql(api.client, EXPORT, {"id": export_id}, user=user))
        export: dict[str, Any] = body["viewer"]["dataExport"]
        if export["status"] not in {"QUEUED", "RUNNING"}:
            return export
        assert time.monotonic() < deadline, export
        await asyncio.sleep(0.05)


async def test_data_export_requested_and_followed(api: Api) -> None:
    user, other = await api.user(), await api.user()
    assert codes(await gql(api.client, REQUEST)) == ["unauthenticated"]
    requested = data(await gql(api.client, REQUEST, user=user))["requestDataExport"]
    assert requested["status"] == "QUEUED"
    # someone else's export: not found, as REST
    theirs = await gql(api.client, EXPORT, {"id": requested["id"]}, user=other)
    assert codes(theirs) == ["not-found"]
    unknown = await gql(api.client, EXPORT, {"id": str(uuid.uuid4())}, user=user)
    assert codes(unknown) == ["not-found"]
    export = await _ready(api, user, requested["id"])
    assert export["status"] == "READY"
    assert export["sizeBytes"] > 0
    download = await api.client.get(export["downloadUrl"], headers=user.auth)
    assert download.status_code == 200
    assert download.json()["profile"]["email"] == user.email


async def test_consents_read_and_changed(api: Api) -> None:
    user = await api.user()
    assert codes(await gql(api.client, CONSENTS)) == ["unauthenticated"]
    before = data(await gql(api.client, CONSENTS, user=user))["viewer"]["consents"]
    assert {c["purpose"] for c in before["purposes"]} == {"marketing_email", "product_analytics"}
    assert before["history"] == []
    grant = {"consents": [{"purpose": "marketing_email", "granted": True}]}
    changed = data(await gql(api.client, SET, grant, user=user))["setConsents"]
    assert {"purpose": "marketing_email", "granted": True} in changed["purposes"]
    assert changed["history"] == [{"purpose": "marketing_email", "granted": True}]
    withdraw = {"consents": [{"purpose": "marketing_email", "granted": False}]}
    data(await gql(api.client, SET, withdraw, user=user))
    # the history a page at a time, newest first
    page = data(await gql(api.client, CONSENTS, {"first": 1}, user=user))["viewer"]["consents"]
    assert [h["granted"] for h in page["history"]] == [False]
    after = {"first": 1, "after": page["historyNextCursor"]}
    older = data(await gql(api.client, CONSENTS, after, user=user))["viewer"]["consents"]
    assert [h["granted"] for h in older["history"]] == [True]
    assert older["historyNextCursor"] is None
    # REST's schema: an unknown purpose; and a purpose named twice
    unknown = {"consents": [{"purpose": "telepathy", "granted": True}]}
    assert codes(await gql(api.client, SET, unknown, user=user)) == ["validation-error"]
    twice = {"consents": [grant["consents"][0], withdraw["consents"][0]]}
    assert codes(await gql(api.client, SET, twice, user=user)) == ["unprocessable-entity"]


@pytest.mark.users_over_http
async def test_erase_account_needs_a_recent_sign_in(api: Api, resources: Resources) -> None:
    user = await api.user()
    stale = UserHandle(user.id, user.email, stale_token(resources, user.token))
    assert codes(await gql(api.client, ERASE, user=stale)) == ["recent-auth-required"]
    assert (await api.client.get(ME, headers=user.auth)).status_code == 200
    assert data(await gql(api.client, ERASE, user=user))["eraseAccount"] is True
    # the token is revoked with the account: REST's 401 before any GraphQL runs
    r = await api.client.post("/graphql", json={"query": "{ viewer { id } }"}, headers=user.auth)
    assert r.status_code == 401
    assert (await api.client.get(ME, headers=bearer(user.token))).status_code == 401


async def test_a_consent_history_is_priced_by_its_page_size(api: Api) -> None:
    """The cost limit counts historyFirst as a page size: eleven full history pages are
    refused before anything runs, eleven of one entry pass."""
    user = await api.user()

    def query(size: int) -> str:
        fields = "history { purpose granted recordedAt source }"
        aliases = " ".join(
            f"c{i}: consents(historyFirst: {size}) {{ {fields} }}" for i in range(11)
        )
        return f"{{ viewer {{ {aliases} }} }}"

    assert codes(await gql(api.client, query(100), user=user)) == ["query-too-complex"]
    assert data(await gql(api.client, query(1), user=user))["viewer"]["c0"]["history"] == []
