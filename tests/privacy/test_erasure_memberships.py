"""Erasure ends the erased account's shop memberships (the attacker's sweep;
decision 0124). Before, an erased owner or staff member stayed a member for ever: shops
listed a person who no longer exists as staff in their audit view, an erased co-owner kept
counting as an owner (the remaining owner could never be told they are the last one), and
a shop whose only owner was erased could not be handed over by anyone but an operator
without any trace of why."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from storefront.resources import Resources
from storefront.shops.models import Membership
from tests.support.factories import V1, Api
from tests.support.identity import promote_to_admin
from tests.support.privacy import ME
from tests.support.problems import assert_problem


async def _memberships(resources: Resources, user_id: str) -> list[tuple[str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(Membership.shop_id, Membership.role).where(
                Membership.user_id == uuid.UUID(user_id)
            )
        )
        return [(str(shop_id), role.value) for shop_id, role in rows]


async def test_erasure_ends_every_membership_and_the_shops_say_so(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    leaver = await api.user()
    shared = await api.shop(owner)
    await api.add_member(owner, shared, leaver, "owner")
    own = await api.shop(leaver)  # the leaver is its only owner

    r = await api.client.delete(ME, headers=leaver.auth)
    assert r.status_code == 202, r.text

    assert await _memberships(resources, leaver.id) == []
    # the remaining owner is now the last one, and is told so
    assert_problem(
        await api.client.delete(
            f"{V1}/shops/{shared['id']}/members/{owner.id}", headers=owner.auth
        ),
        409,
        slug="conflict",
    )
    # the shop's audit view shows the removal, by someone no longer on its staff
    r = await api.client.get(f"{V1}/shops/{shared['id']}/audit-events", headers=owner.auth)
    assert r.status_code == 200, r.text
    removal = next(e for e in r.json()["items"] if e["action"] == "shop.member_removed")
    assert removal["details"] == {"role_before": "owner", "role_after": None, "reason": "erased"}
    assert removal["actor_role"] == "other_user"
    assert removal["actor_id"] is None

    # a shop left without an owner is handed over by a platform administrator
    admin = await api.user()
    await promote_to_admin(resources, admin)
    successor = await api.user()
    r = await api.client.put(
        f"{V1}/shops/{own['id']}/members/{successor.id}", json={"role": "owner"}, headers=admin.auth
    )
    assert r.status_code == 200, r.text
    assert await _memberships(resources, successor.id) == [(own["id"], "owner")]
