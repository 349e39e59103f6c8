"""Consents are bounded (decision 0128): changes have their own rate rule (each one adds an
append-only record and an audit entry), and GET returns the current state with a bounded,
paginated history (the newest changes first by page, oldest first within a page, as before).
Real HTTP, SQLite and PostgreSQL; the rate rule with its counters in Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx2
from sqlalchemy import func, select

from storefront.kit.db import utcnow
from storefront.privacy.models import ConsentRecord
from storefront.resources import Resources
from tests.support.factories import V1, Api
from tests.support.privacy import CONSENTS
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import build, client_for, serving


async def _records(resources: Resources, user_id: str) -> int:
    async with resources.sessionmaker() as session:
        stmt = select(func.count()).select_from(ConsentRecord)
        stmt = stmt.where(ConsentRecord.user_id == uuid.UUID(user_id))
        return int(await session.scalar(stmt) or 0)


async def _history(resources: Resources, user_id: str, changes: int) -> None:
    """``changes`` alternating decisions on marketing_email, a second apart, oldest first."""
    start = utcnow() - timedelta(hours=1)
    async with resources.sessionmaker() as session, session.begin():
        session.add_all(
            ConsentRecord(
                user_id=uuid.UUID(user_id),
                purpose="marketing_email",
                granted=n % 2 == 0,
                recorded_at=start + timedelta(seconds=n),
                source="api",
            )
            for n in range(changes)
        )


async def test_consent_changes_have_their_own_budget(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"consent_rate": "3/minute"},
    )
    async with serving(app), client_for(app) as client:
        user = await Api(client).user()
        for n in range(3):
            r = await client.put(CONSENTS, json={"marketing_email": n % 2 == 0}, headers=user.auth)
            assert r.status_code == 200, r.text
            assert '"consents";q=3;w=60' in r.headers["RateLimit-Policy"]
        refused = await client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
        body = assert_problem(refused, 429)
        assert "consents" in body["detail"]
        assert await _records(app.state.resources, user.id) == 3  # the refused one left no trace
        # reading them, and the rest of the API, stay on the general budget
        assert (await client.get(CONSENTS, headers=user.auth)).status_code == 200
        assert (await client.get(f"{V1}/users/me", headers=user.auth)).status_code == 200


async def test_the_history_is_bounded_and_paginated(api: Api, resources: Resources) -> None:
    user = await api.user()
    await _history(resources, user.id, 130)
    r = await api.client.get(CONSENTS, headers=user.auth)
    assert r.status_code == 200, r.text
    first = r.json()
    # the current state is the latest decision, whatever the page size
    state = {c["purpose"]: c["granted"] for c in first["consents"]}
    assert state == {"marketing_email": False, "product_analytics": False}
    assert len(first["history"]) == 50  # the newest 50 by default, oldest first
    times = [h["recorded_at"] for h in first["history"]]
    assert times == sorted(times)
    assert first["history_next_cursor"]

    # walk back to the first change, 60 at a time
    seen = list(first["history"])
    cursor = first["history_next_cursor"]
    while cursor:
        page = await api.client.get(
            CONSENTS, params={"history_cursor": cursor, "history_limit": 60}, headers=user.auth
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["history"]) <= 60
        seen = body["history"] + seen
        cursor = body["history_next_cursor"]
    assert len(seen) == 130
    assert [h["granted"] for h in seen] == [n % 2 == 0 for n in range(130)]
    stamps = [h["recorded_at"] for h in seen]
    assert stamps == sorted(stamps)


async def test_bad_history_parameters_are_problems(api: Api) -> None:
    user = await api.user()
    for params in ({"history_limit": 0}, {"history_limit": 101}, {"history_cursor": "nope"}):
        r = await api.client.get(CONSENTS, params=params, headers=user.auth)
        assert_problem(r, 422)


async def test_a_short_history_is_one_page_as_before(api: Api, client: httpx2.AsyncClient) -> None:
    user = await api.user()
    r = await client.put(CONSENTS, json={"marketing_email": True}, headers=user.auth)
    body = r.json()
    assert len(body["history"]) == 1
    assert body["history_next_cursor"] is None
