"""Races on shops (the attacker's sweep): limits that count before they insert
(webhook endpoints per shop, shops per owner) hold under concurrent requests, and two
requests adding the same member at once never answer 500. Requests run truly concurrently
(asyncio.gather over the ASGI app, each with its own session and connection); PostgreSQL is
where these races are real."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from storefront.resources import Resources
from storefront.settings import Settings
from storefront.shops.models import Membership, Role
from storefront.webhooks.models import WebhookEndpoint
from storefront.webhooks.service import MAX_ENDPOINTS_PER_SHOP
from tests.support.factories import V1, Api, unique
from tests.support.identity import promote_to_admin
from tests.support.problems import assert_problem


def new_slug() -> str:
    return unique("shop").lower()


@pytest.fixture(autouse=True)
def _postgres_is_required(backend: str, postgres_unavailable: str | None) -> None:
    if backend == "postgres" and postgres_unavailable is not None:
        pytest.fail(f"these races must run on PostgreSQL: {postgres_unavailable}", pytrace=False)


async def test_concurrent_webhook_creation_never_passes_the_per_shop_cap(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    attempts = MAX_ENDPOINTS_PER_SHOP * 2

    responses = await asyncio.gather(
        *(
            api.client.post(
                f"{V1}/shops/{shop['id']}/webhooks",
                json={"url": f"https://hooks.example.com/{i}", "events": ["order.placed"]},
                headers=owner.auth,
            )
            for i in range(attempts)
        )
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: MAX_ENDPOINTS_PER_SHOP, 409: attempts - MAX_ENDPOINTS_PER_SHOP}, [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    async with resources.sessionmaker() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.shop_id == uuid.UUID(shop["id"]))
        )
    assert stored == MAX_ENDPOINTS_PER_SHOP


async def test_adding_the_same_member_concurrently_never_answers_500(
    api: Api, resources: Resources
) -> None:
    owner = await api.user()
    newcomer = await api.user()
    for _ in range(3):
        shop = await api.shop(owner)
        responses = await asyncio.gather(
            *(
                api.client.put(
                    f"{V1}/shops/{shop['id']}/members/{newcomer.id}",
                    json={"role": "staff"},
                    headers=owner.auth,
                )
                for _ in range(6)
            )
        )
        assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
        assert all(r.json()["role"] == "staff" for r in responses)
        async with resources.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Membership.user_id, Membership.role).where(
                        Membership.shop_id == uuid.UUID(shop["id"])
                    )
                )
            ).all()
        assert sorted((str(u), r.value) for u, r in rows) == sorted(
            [(owner.id, "owner"), (newcomer.id, "staff")]
        )


async def test_one_account_owns_a_bounded_number_of_shops_even_when_created_at_once(
    api: Api, resources: Resources, settings: Settings
) -> None:
    """Unrestricted resource consumption (OWASP API4): without a cap one account creates
    shops (and 10 webhook endpoints in each) without end (decision 0121)."""
    cap = settings.max_owned_shops_per_user
    me = await api.user()
    attempts = cap + 10

    responses = await asyncio.gather(
        *(
            api.client.post(
                f"{V1}/shops", json={"name": f"Shop {i}", "slug": new_slug()}, headers=me.auth
            )
            for i in range(attempts)
        )
    )

    assert Counter(r.status_code for r in responses) == {201: cap, 409: attempts - cap}, [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    refused = next(r for r in responses if r.status_code == 409)
    assert_problem(refused, 409, slug="conflict")
    assert str(cap) in refused.json()["detail"]
    async with resources.sessionmaker() as session:
        owned = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.user_id == uuid.UUID(me.id), Membership.role == Role.owner)
        )
    assert owned == cap

    # giving one away makes room again; platform administrators are not capped
    other = await api.user()
    shop_id = next(r.json()["id"] for r in responses if r.status_code == 201)
    await api.add_member(me, {"id": shop_id}, other, "owner")
    r = await api.client.delete(f"{V1}/shops/{shop_id}/members/{me.id}", headers=me.auth)
    assert r.status_code == 204, r.text
    await api.shop(me)
    assert_problem(
        await api.client.post(
            f"{V1}/shops", json={"name": "x", "slug": new_slug()}, headers=me.auth
        ),
        409,
        slug="conflict",
    )
    admin = await api.user()
    await promote_to_admin(resources, admin)
    for _ in range(cap + 1):
        await api.shop(admin)


async def test_member_changes_and_orders_in_one_shop_at_once_all_succeed(api: Api) -> None:
    """The shop lock of member changes and webhook creation does not hold up (or deadlock
    with) orders and products written in the same shop at the same moment."""
    owner = await api.user()
    shop = await api.shop(owner)
    await api.client.patch(
        f"{V1}/shops/{shop['id']}/order-limits",
        json={"max_pending_stock_percent": 100},
        headers=owner.auth,
    )
    product = await api.product(owner, shop, stock=1000)
    customers = [await api.user() for _ in range(6)]
    staff = [await api.user() for _ in range(6)]

    responses = await asyncio.gather(
        *(api.place_order(customer, shop, (product, 1)) for customer in customers),
        *(
            api.client.put(
                f"{V1}/shops/{shop['id']}/members/{member.id}",
                json={"role": "staff"},
                headers=owner.auth,
            )
            for member in staff
        ),
        *(
            api.client.post(
                f"{V1}/shops/{shop['id']}/webhooks",
                json={"url": f"https://hooks.example.com/{i}", "events": ["order.placed"]},
                headers=owner.auth,
            )
            for i in range(3)
        ),
        *(
            api.client.post(
                f"{V1}/shops/{shop['id']}/products",
                json={
                    "sku": f"MIX-{i}",
                    "name": "n",
                    "price_cents": 100,
                    "currency": "EUR",
                    "stock": 1,
                    "category": "c",
                },
                headers=owner.auth,
            )
            for i in range(3)
        ),
    )

    assert [r.status_code for r in responses] == [201] * 6 + [200] * 6 + [201] * 6, [
        r.text for r in responses if r.status_code >= 400
    ]
