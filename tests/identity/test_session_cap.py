"""Live sessions per account are bounded (the attacker's sweep; OWASP API4).

Every sign-in creates a session (and a refresh token row) that lives until it is idle for 14
days: at the per-account sign-in budget that was some 200,000 live sessions per account,
every one of them returned by each ``GET /auth/sessions``. A sign-in past
``STOREFRONT_AUTH__MAX_SESSIONS_PER_USER`` now ends the account's least recently used
sessions (decision 0122)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from storefront.identity.models import AuthSession
from storefront.resources import Resources
from storefront.settings import Settings
from tests.support.factories import PASSWORD, V1, Api

LOGIN = f"{V1}/auth/login"


@pytest.mark.users_over_http
async def test_a_sign_in_past_the_cap_ends_the_least_recently_used_sessions(
    api: Api, resources: Resources, settings: Settings
) -> None:
    cap = settings.auth.max_sessions_per_user
    me = await api.user()  # one session already
    extra = 3
    pairs = []
    for _ in range(cap - 1 + extra):
        r = await api.client.post(LOGIN, json={"email": me.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        pairs.append(r.json())
    oldest = [me.token] + [p["access_token"] for p in pairs[: extra - 1]]
    newest = pairs[-1]

    r = await api.client.get(
        f"{V1}/auth/sessions", headers={"Authorization": f"Bearer {newest['access_token']}"}
    )
    assert r.status_code == 200, r.text
    listed = r.json()
    assert len(listed) == cap
    assert sum(1 for s in listed if s["current"]) == 1

    # the ended sessions' access and refresh tokens no longer work; the kept ones do
    for token in oldest:
        r = await api.client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
    r = await api.client.post(
        f"{V1}/auth/refresh", json={"refresh_token": pairs[extra - 2]["refresh_token"]}
    )
    assert r.status_code == 401, r.text
    r = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": newest["refresh_token"]})
    assert r.status_code == 200, r.text

    async with resources.sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuthSession.revoked_reason).where(AuthSession.user_id == uuid.UUID(me.id))
            )
        ).scalars()
        reasons = sorted(str(reason) for reason in rows)
    assert reasons.count("session_limit") == extra
    assert reasons.count("None") == cap
