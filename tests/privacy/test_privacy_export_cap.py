"""Live personal-data exports per account are bounded (the attacker's sweep; OWASP
API4). Each export is a full sealed copy of the account's data, kept 72 hours: at the
expensive-route budget (20 an hour) one account kept some 1,440 copies at once. Past
``STOREFRONT_PRIVACY__MAX_LIVE_EXPORTS`` a request is a 409 that creates nothing, also when
the requests arrive together (decision 0123)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select, update

from storefront.kit.db import utcnow
from storefront.privacy.models import DataExport
from storefront.resources import Resources
from storefront.settings import Settings
from tests.support.factories import Api
from tests.support.privacy import EXPORTS, request_export, wait_for_export
from tests.support.problems import assert_problem


async def _exports_of(resources: Resources, user_id: str) -> int:
    async with resources.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(DataExport)
            .where(DataExport.user_id == uuid.UUID(user_id))
        )
    return int(count or 0)


async def test_a_request_past_the_live_export_cap_is_refused_until_one_expires(
    api: Api, resources: Resources, settings: Settings
) -> None:
    cap = settings.privacy.max_live_exports
    me = await api.user()
    accepted = [await request_export(api.client, me) for _ in range(cap)]
    for export in accepted:
        await wait_for_export(api.client, me, export["id"])

    r = await api.client.post(EXPORTS, headers=me.auth)
    assert_problem(r, 409, slug="conflict")
    assert str(cap) in r.json()["detail"]
    assert await _exports_of(resources, me.id) == cap

    # an expired export no longer counts (its archive is gone or about to be)
    async with resources.sessionmaker() as session:
        await session.execute(
            update(DataExport)
            .where(DataExport.id == uuid.UUID(accepted[0]["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    again = await request_export(api.client, me)
    await wait_for_export(api.client, me, again["id"])


async def test_concurrent_export_requests_never_pass_the_cap(
    api: Api, resources: Resources, settings: Settings
) -> None:
    cap = settings.privacy.max_live_exports
    me = await api.user()
    attempts = cap + 5

    responses = await asyncio.gather(
        *(api.client.post(EXPORTS, headers=me.auth) for _ in range(attempts))
    )

    assert Counter(r.status_code for r in responses) == {202: cap, 409: attempts - cap}, [
        r.text for r in responses if r.status_code not in (202, 409)
    ]
    for r in responses:
        if r.status_code == 202:
            await wait_for_export(api.client, me, r.json()["id"])
    assert await _exports_of(resources, me.id) == cap
