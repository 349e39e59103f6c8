"""The sales projection's endpoint and its rebuild from the stored event stream, on SQLite
and PostgreSQL (in-process delivery)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import delete

from storefront.events import EventType, record
from storefront.kit.db import run_after_commit, utcnow
from storefront.resources import Resources
from storefront.sales import SALES_PROJECTION, rebuild
from storefront.sales.models import SalesDay
from tests.support.events import eventually, projection, relayed_and_consumed
from tests.support.factories import V1, Api, shop_with_staff
from tests.support.orders import cancel_url
from tests.support.problems import assert_problem
from tests.support.servers import CLI, cli_env


def sales_url(shop: dict[str, Any] | str, **query: str) -> str:
    shop_id = shop if isinstance(shop, str) else shop["id"]
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{V1}/shops/{shop_id}/sales" + (f"?{params}" if params else "")


async def _settle(resources: Resources) -> None:
    await eventually(
        lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
        bool,
        what="events relayed and consumed",
    )


async def _payment_event(
    resources: Resources, event_type: EventType, order: dict[str, Any], amount: int
) -> None:
    """What payments records when the provider confirms or refunds (the one-call API)."""
    async with resources.sessionmaker() as session:
        async with session.begin():
            record(
                session,
                event_type,
                subject=f"orders/{order['id']}",
                shop_id=uuid.UUID(order["shop_id"]),
                data={
                    "id": order["id"],
                    "shop_id": order["shop_id"],
                    "currency": order["currency"],
                    "amount_cents": amount,
                },
            )
        await run_after_commit(session)


async def test_only_the_shops_owners_and_staff_read_its_sales(
    api: Api, client: httpx2.AsyncClient
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    other_owner = await api.user()
    await api.shop(other_owner)

    for reader in (owner, staff):
        r = await client.get(sales_url(shop), headers=reader.auth)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
    # anyone else: the shop's sales are not theirs to know of (404, as for an unknown shop)
    for outsider in (customer, other_owner):
        r = await client.get(sales_url(shop), headers=outsider.auth)
        assert_problem(r, 404)
    r = await client.get(sales_url("01890a5d-ac96-774b-bcce-b302099a8057"), headers=owner.auth)
    assert_problem(r, 404)
    r = await client.get(sales_url(shop))
    assert r.status_code == 401


async def test_the_range_is_checked(api: Api, client: httpx2.AsyncClient) -> None:
    owner, _, shop = await shop_with_staff(api)
    r = await client.get(
        sales_url(shop, **{"from": "2026-02-01", "to": "2026-01-01"}), headers=owner.auth
    )
    assert_problem(r, 422)
    r = await client.get(
        sales_url(shop, **{"from": "2024-01-01", "to": "2026-01-01"}), headers=owner.auth
    )
    assert_problem(r, 422)
    r = await client.get(sales_url(shop, **{"from": "yesterday"}), headers=owner.auth)
    assert r.status_code == 422


async def _clear_of_midnight(margin: timedelta = timedelta(minutes=2)) -> None:
    """The projection counts by UTC day: a test whose orders straddle midnight would find them
    on two days. Close to midnight, wait for the new day first."""
    now = utcnow()
    if (now + margin).date() != now.date():
        next_day = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        await asyncio.sleep((next_day - now).total_seconds() + 0.5)


@pytest.mark.parametrize("rebuilds", [1, 2])
async def test_the_rebuilt_projection_equals_the_live_one(
    api: Api, client: httpx2.AsyncClient, resources: Resources, rebuilds: int
) -> None:
    await _clear_of_midnight()
    owner, _, shop = await shop_with_staff(api)
    other_owner, _, other_shop = await shop_with_staff(api)
    customer = await api.user()
    euro = await api.product(owner, shop, stock=50, price_cents=1000, currency="EUR")
    dollar = await api.product(owner, shop, stock=50, price_cents=300, currency="USD")
    elsewhere = await api.product(other_owner, other_shop, stock=50, price_cents=99)

    paid = await api.order(customer, shop, (euro, 2))  # 20.00 EUR
    refunded = await api.order(customer, shop, (euro, 1))  # 10.00 EUR
    cancelled = await api.order(customer, shop, (dollar, 3))  # 9.00 USD
    await api.order(customer, shop, (dollar, 1))  # 3.00 USD, still pending
    await api.order(customer, other_shop, (elsewhere, 5))
    r = await client.post(cancel_url(shop, cancelled["id"]), headers=customer.auth)
    assert r.status_code == 200, r.text
    await _payment_event(resources, EventType.order_paid, paid, 2000)
    await _payment_event(resources, EventType.order_paid, refunded, 1000)
    await _payment_event(resources, EventType.order_refunded, refunded, 1000)
    await _settle(resources)

    live = await projection(resources.sessionmaker)
    today = utcnow().date()
    r = await client.get(sales_url(shop), headers=owner.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["shop_id"] == shop["id"]
    assert (body["from"], body["to"]) == (str(today - timedelta(days=29)), str(today))
    by_currency = {day["currency"]: day for day in body["days"]}
    assert set(by_currency) == {"EUR", "USD"}
    eur, usd = by_currency["EUR"], by_currency["USD"]
    assert eur["day"] == str(today)
    assert (eur["orders_placed"], eur["placed_cents"]) == (2, 3000)
    assert (eur["orders_paid"], eur["revenue_cents"]) == (2, 3000)
    assert (eur["refunds"], eur["refunded_cents"]) == (1, 1000)
    assert (usd["orders_placed"], usd["placed_cents"], usd["orders_cancelled"]) == (2, 1200, 1)
    assert (usd["orders_paid"], usd["revenue_cents"]) == (0, 0)
    # a range without activity
    r = await client.get(
        sales_url(shop, **{"from": "2020-01-01", "to": "2020-01-31"}), headers=owner.auth
    )
    assert r.json()["days"] == []

    for _ in range(rebuilds):  # replaying twice changes nothing either
        replayed = await rebuild(resources.sessionmaker)
        assert replayed == 9  # 5 placed, 1 cancelled, 2 paid, 1 refunded
        assert await projection(resources.sessionmaker) == live
    assert len(live) == 3  # two currencies in one shop, one in the other


async def test_storefront_events_replay_rebuilds_a_lost_projection(
    api: Api, resources: Resources, database_url: str
) -> None:
    owner, _, shop = await shop_with_staff(api)
    customer = await api.user()
    product = await api.product(owner, shop, stock=10, price_cents=250)
    paid = await api.order(customer, shop, (product, 4))
    await _payment_event(resources, EventType.order_paid, paid, 1000)
    await _settle(resources)
    live = await projection(resources.sessionmaker)
    assert live
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(delete(SalesDay))  # the projection's table lost
    assert await projection(resources.sessionmaker) == []

    done = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "events", "replay"],
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt from 2 event(s)" in done.stdout
    assert await projection(resources.sessionmaker) == live
