"""The caller is known from the access token and the revocation list, without SQL; the
routes that need the user row read it in one statement. And what the user row used to
guard still holds: an erased account's tokens are refused at once, even a token with no
session behind it (the account itself is revoked, not only its sessions)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx2
from sqlalchemy import update

from storefront.identity.models import User
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import QueryCounter
from tests.support.apps import running_app
from tests.support.factories import Api, make_user
from tests.support.identity import promote_to_admin, set_user

ME = "/api/v1/users/me"
CONSENTS = "/api/v1/users/me/consents"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_caller_is_known_without_reading_the_user_row(
    api: Api, resources: Resources, count_queries: Callable[[], QueryCounter]
) -> None:
    user = await api.user()
    token = resources.tokens.issue(user.id, session_id=None, admin=False)
    counter = count_queries()
    counter.reset()
    r = await api.client.get(CONSENTS, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert counter.statements  # the route's own reads
    assert not [s for s in counter.statements if " users" in s], counter.statements


async def test_users_me_reads_the_row_in_one_statement(
    api: Api, resources: Resources, count_queries: Callable[[], QueryCounter]
) -> None:
    user = await api.user(display_name="Once")
    token = resources.tokens.issue(user.id, admin=False)
    counter = count_queries()
    counter.reset()
    r = await api.client.get(ME, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Once"
    assert len(counter.statements) == 1, counter.statements


async def test_a_token_minted_before_the_admin_claim_still_works(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    token = resources.tokens.issue(user.id)  # no admin claim, as tokens minted before it
    assert (await api.client.get(CONSENTS, headers=bearer(token))).status_code == 200


async def test_a_demoted_admin_loses_the_rights_at_once(api: Api, resources: Resources) -> None:
    # the token still claims admin rights; the account no longer has them: the claim is
    # confirmed against the account, so a demotion does not wait for the token to expire
    user = await api.user()
    await promote_to_admin(resources, user)
    audit = "/api/v1/admin/audit-events"
    assert (await api.client.get(audit, headers=user.auth)).status_code == 200
    await set_user(resources, user.id, is_admin=False)
    assert (await api.client.get(audit, headers=user.auth)).status_code == 403


async def test_erasure_refuses_a_token_without_a_session_at_once(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    # a token no session stands behind (as one whose session expired before the erasure):
    # only the account's own revocation can stop it
    token = resources.tokens.issue(user.id, session_id=None, admin=False)
    assert (await api.client.get(CONSENTS, headers=bearer(token))).status_code == 200
    assert (await api.client.delete(ME, headers=bearer(token))).status_code == 202
    assert (await api.client.get(CONSENTS, headers=bearer(token))).status_code == 401
    assert (await api.client.get(ME, headers=bearer(token))).status_code == 401


async def test_without_redis_several_workers_still_see_an_erasure_made_elsewhere(
    settings: Settings,
) -> None:
    """No Redis, two workers: the revocation list is per process, so the account row is
    read (an erasure by the other worker shows only in the database)."""
    async with running_app(settings.model_copy(update={"workers": 2})) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            user = await make_user(resources)
            token = resources.tokens.issue(user.id, admin=False)
            assert (await client.get(CONSENTS, headers=bearer(token))).status_code == 200
            # what the other worker's erasure leaves in the shared database
            async with resources.sessionmaker() as session, session.begin():
                await session.execute(
                    update(User).where(User.id == uuid.UUID(user.id)).values(is_active=False)
                )
            assert (await client.get(CONSENTS, headers=bearer(token))).status_code == 401
