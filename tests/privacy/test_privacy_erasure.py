"""GDPR erasure (article 17), end to end: DELETE /users/me with a recent sign-in revokes
every session, makes sign-in impossible, destroys the data key (every ciphertext of the
user, even read straight from the table, is unreadable), anonymises what stays in plaintext,
and keeps orders for accounting: staff see them anonymised and still count them."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import orjson
import pyotp
import pytest
from sqlalchemy import func, select

from storefront.auditlog import entries_about
from storefront.idempotency import IdempotencyRecord
from storefront.identity.models import AuthSession, RecoveryCode, TotpFactor, User
from storefront.identity.profile import email_aad
from storefront.orders.models import Order
from storefront.orders.sealing import address_aad
from storefront.privacy.models import ConsentRecord, DataExport
from storefront.resources import Resources
from storefront.vault import DataKeyRow
from tests.support.factories import PASSWORD, V1, Api, UserHandle, shop_with_staff
from tests.support.privacy import (
    CONSENTS,
    ME,
    bearer,
    request_export,
    stale_token,
    wait_for_export,
)
from tests.support.problems import assert_problem

LOGIN = f"{V1}/auth/login"


async def _count(resources: Resources, model: Any, *where: Any) -> int:
    async with resources.sessionmaker() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int(await session.scalar(stmt) or 0)


async def _raw_ciphertexts(resources: Resources, user_id: uuid.UUID) -> list[tuple[str, str]]:
    """(sealed, aad) of the user's email and every order address, straight from the tables."""
    async with resources.sessionmaker() as session:
        email = await session.scalar(select(User.email_sealed).where(User.id == user_id))
        orders = (
            await session.execute(
                select(Order.id, Order.shipping_address_sealed).where(Order.customer_id == user_id)
            )
        ).all()
    assert email is not None
    return [(email, email_aad(user_id))] + [
        (sealed, address_aad(order_id)) for order_id, sealed in orders
    ]


async def _open(
    resources: Resources, user_id: uuid.UUID, items: list[tuple[str, str]]
) -> list[Any]:
    async with resources.sessionmaker() as session:  # a fresh session: no cached key
        return await resources.vault.open_many(session, [(user_id, s, aad) for s, aad in items])


async def _enable_totp(api: Api, user: UserHandle) -> None:
    r = await api.client.post(f"{V1}/auth/mfa/totp", headers=user.auth)
    assert r.status_code == 201, r.text
    code = pyotp.TOTP(r.json()["secret"]).now()
    r = await api.client.post(f"{V1}/auth/mfa/totp/confirm", json={"code": code}, headers=user.auth)
    assert r.status_code == 200, r.text


@pytest.mark.users_over_http
async def test_erasure_end_to_end(api: Api, resources: Resources) -> None:
    client = api.client
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=1250)
    customer = await api.user(display_name="Grace Hopper")
    user_id = uuid.UUID(customer.id)
    pair = (await client.post(LOGIN, json={"email": customer.email, "password": PASSWORD})).json()
    order = await api.order(customer, shop, (product, 2))
    await client.put(CONSENTS, json={"marketing_email": True}, headers=customer.auth)
    export = await request_export(client, customer)
    assert (await wait_for_export(client, customer, export["id"]))["status"] == "ready"
    await _enable_totp(api, customer)
    before = await client.get(f"{V1}/shops/{shop['id']}/orders", headers=staff.auth)
    assert before.json()["items"][0]["shipping_address"]["name"] == "Ada Lovelace"
    ciphertexts = await _raw_ciphertexts(resources, user_id)
    assert len(ciphertexts) == 2
    # readable before: the checks below can tell the difference
    assert all(await _open(resources, user_id, ciphertexts))
    assert await _count(resources, IdempotencyRecord, IdempotencyRecord.owner == customer.id) == 1

    r = await client.delete(ME, headers=customer.auth)
    assert r.status_code == 202, r.text
    assert r.headers["cache-control"] == "no-store"

    # every way in is closed
    assert_problem(await client.get(ME, headers=customer.auth), 401)
    assert_problem(await client.get(ME, headers=bearer(pair["access_token"])), 401)
    r = await client.post(f"{V1}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_problem(r, 401)
    r = await client.post(LOGIN, json={"email": customer.email, "password": PASSWORD})
    assert_problem(r, 401)

    # crypto-shredding: the same ciphertexts, read straight from the table, no longer open
    assert await _raw_ciphertexts(resources, user_id) == ciphertexts
    assert await _open(resources, user_id, ciphertexts) == [None, None]
    async with resources.sessionmaker() as session:
        key = (
            await session.execute(select(DataKeyRow).where(DataKeyRow.subject_id == user_id))
        ).scalar_one()
        assert key.wrapped_key is None
        assert key.destroyed_at is not None
        user = (await session.execute(select(User).where(User.id == user_id))).scalar_one()
        assert user.is_active is False
        assert not user.password_hash.startswith("$argon2")
        assert user.email_index == f"erased:{user_id}"

    # plaintext personal data anonymised or deleted
    assert await _count(resources, AuthSession, AuthSession.user_id == user_id) >= 2
    assert (
        await _count(
            resources,
            AuthSession,
            AuthSession.user_id == user_id,
            (AuthSession.ip_address.is_not(None))
            | (AuthSession.user_agent.is_not(None))
            | AuthSession.revoked_at.is_(None),
        )
        == 0
    )
    assert await _count(resources, TotpFactor, TotpFactor.user_id == user_id) == 0
    assert await _count(resources, RecoveryCode, RecoveryCode.user_id == user_id) == 0
    assert await _count(resources, IdempotencyRecord, IdempotencyRecord.owner == customer.id) == 0
    assert await _count(resources, DataExport, DataExport.user_id == user_id) == 0
    # consent history kept as proof, every consent withdrawn
    async with resources.sessionmaker() as session:
        consents = (
            await session.execute(
                select(ConsentRecord.purpose, ConsentRecord.granted, ConsentRecord.source)
                .where(ConsentRecord.user_id == user_id)
                .order_by(ConsentRecord.recorded_at, ConsentRecord.id)
            )
        ).all()
        actions = [e["action"] for e in await entries_about(session, user_id)]
    assert [tuple(c) for c in consents] == [
        ("marketing_email", True, "api"),
        ("marketing_email", False, "erasure"),
    ]
    assert "user.erased" in actions

    # orders stay, anonymised, for staff: one order, in the list, in the streamed exports
    r = await client.get(f"{V1}/shops/{shop['id']}/orders/{order['id']}", headers=staff.auth)
    assert r.status_code == 200, r.text
    kept = r.json()
    assert kept["shipping_address"] is None
    assert kept["customer_erased"] is True
    assert kept["total_cents"] == 2500
    assert [line["quantity"] for line in kept["lines"]] == [2]
    listing = (await client.get(f"{V1}/shops/{shop['id']}/orders", headers=staff.auth)).json()
    assert [o["id"] for o in listing["items"]] == [order["id"]]
    assert listing["items"][0]["customer_erased"] is True
    r = await client.get(
        f"{V1}/shops/{shop['id']}/orders",
        headers={**staff.auth, "Accept": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    [line] = [orjson.loads(x) for x in r.content.splitlines() if x.strip()]
    assert line["id"] == order["id"]
    assert line["customer_erased"] is True
    assert line["shipping_address"] is None
    r = await client.get(
        f"{V1}/shops/{shop['id']}/orders", headers={**staff.auth, "Accept": "text/csv"}
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["order_id"] for row in rows] == [order["id"]]
    assert "Ada Lovelace" not in r.text

    # the address may register again, as a new account
    r = await client.post(
        f"{V1}/auth/register",
        json={"email": customer.email, "password": PASSWORD, "display_name": "New"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] != customer.id


@pytest.mark.users_over_http
async def test_erasure_needs_a_recent_sign_in(api: Api, resources: Resources) -> None:
    customer = await api.user()
    r = await api.client.delete(ME, headers=bearer(stale_token(resources, customer.token)))
    body = assert_problem(r, 401, slug="recent-auth-required")
    assert body["max_age"] == 600
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    # nothing happened
    assert (await api.client.get(ME, headers=customer.auth)).status_code == 200
    r = await api.client.post(LOGIN, json={"email": customer.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert await _count(resources, DataKeyRow, DataKeyRow.destroyed_at.is_not(None)) == 0


async def test_erasure_needs_a_sign_in(api: Api) -> None:
    assert_problem(await api.client.delete(ME), 401)
