"""Consent records: the current state per purpose, every change kept with its time, only
changes recorded, unknown purposes refused without a trace."""

from __future__ import annotations

from datetime import datetime

import httpx2
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from storefront.privacy.models import ConsentRecord
from storefront.privacy.processing import CONSENT_PURPOSES
from storefront.resources import Resources
from tests.support.factories import Api
from tests.support.privacy import CONSENTS
from tests.support.problems import assert_problem


async def _records(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ConsentRecord)) or 0)


async def test_nothing_is_consented_to_until_the_user_says_so(api: Api) -> None:
    user = await api.user()
    r = await api.client.get(CONSENTS, headers=user.auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert [c["purpose"] for c in body["consents"]] == list(CONSENT_PURPOSES)
    assert all(c["granted"] is False and c["updated_at"] is None for c in body["consents"])
    assert all(c["description"] for c in body["consents"])
    assert body["history"] == []


async def test_every_change_is_kept_with_its_time_and_only_changes(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    client = api.client
    r = await client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    first = r.json()
    assert {c["purpose"]: c["granted"] for c in first["consents"]} == {
        "marketing_email": True,
        "product_analytics": False,
    }
    assert len(first["history"]) == 1

    # the same state again records nothing
    r = await client.put(
        CONSENTS, json={"marketing_email": True, "product_analytics": False}, headers=user.auth
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["history"]) == 1
    assert await _records(resources) == 1

    r = await client.put(
        CONSENTS, json={"marketing_email": False, "product_analytics": True}, headers=user.auth
    )
    assert r.status_code == 200, r.text
    body = (await client.get(CONSENTS, headers=user.auth)).json()
    history = body["history"]
    assert [(h["purpose"], h["granted"]) for h in history] == [
        ("marketing_email", True),
        ("marketing_email", False),
        ("product_analytics", True),
    ]
    assert all(h["source"] == "api" for h in history)
    times = [datetime.fromisoformat(h["recorded_at"]) for h in history]
    assert times == sorted(times)
    state = {c["purpose"]: c for c in body["consents"]}
    assert state["marketing_email"]["granted"] is False
    assert state["product_analytics"]["granted"] is True
    assert datetime.fromisoformat(state["marketing_email"]["updated_at"]) == times[-1]


async def test_unknown_purposes_and_bad_values_change_nothing(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    await api.client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
    for bad in (
        {"marketing_email": False, "sell_my_data": True},  # one unknown purpose spoils it
        {"marketing_email": "no"},  # not a boolean
        {"marketing_email": 0},
        {},  # nothing to record
        ["marketing_email"],
    ):
        r = await api.client.put(CONSENTS, json=bad, headers=user.auth)
        assert_problem(r, 422)
    assert await _records(resources) == 1
    body = (await api.client.get(CONSENTS, headers=user.auth)).json()
    assert {c["purpose"]: c["granted"] for c in body["consents"]}["marketing_email"] is True


async def test_consents_are_private(api: Api, client: httpx2.AsyncClient) -> None:
    alice = await api.user()
    bob = await api.user()
    await client.put(CONSENTS, json={"product_analytics": True}, headers=alice.auth)
    assert (await client.get(CONSENTS, headers=bob.auth)).json()["history"] == []
    assert_problem(await client.get(CONSENTS), 401)
    assert_problem(await client.put(CONSENTS, json={"product_analytics": True}), 401)


async def test_a_recorded_decision_cannot_be_rewritten(api: Api, resources: Resources) -> None:
    user = await api.user()
    await api.client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
    async with resources.sessionmaker() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(update(ConsentRecord).values(granted=False))
        await session.rollback()
        granted = await session.scalar(select(ConsentRecord.granted))
    assert granted is True
