"""The tamper-evident audit log over HTTP: what gets recorded (and what never does), failure
events that outlive their rolled-back request, the append-only table, concurrent appends,
and the two audit endpoints."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from storefront.auditlog import AuditDetailsRejected, AuditEvent, record, verify_chain
from storefront.kit.db import snapshot_session
from storefront.resources import Resources
from tests.support.factories import (
    PASSWORD,
    V1,
    AddressInFactory,
    Api,
    ProductInFactory,
    UserHandle,
    shop_with_staff,
    unique,
)
from tests.support.identity import promote_to_admin
from tests.support.problems import assert_problem


async def audit_rows(resources: Resources) -> list[AuditEvent]:
    async with resources.sessionmaker() as session:
        return list(await session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


async def assert_chain_intact(resources: Resources) -> int:
    async with snapshot_session(resources.sessionmaker) as session, session.begin():
        result = await verify_chain(session, batch_size=7)  # small batches: crosses pages
    assert result.broken is None, result.broken
    return result.checked


def actions(rows: list[AuditEvent]) -> list[str]:
    return [row.action for row in rows]


async def admin(api: Api, resources: Resources) -> UserHandle:
    user = await api.user(display_name="Platform Admin")
    await promote_to_admin(resources, user)
    return user


# --- what a realistic flow records ----------------------------------------------------------


@pytest.mark.users_over_http
async def test_a_realistic_flow_leaves_an_unbroken_chain(api: Api, resources: Resources) -> None:
    owner, staff, shop = await shop_with_staff(api)
    customer = await api.user()
    shop_id = uuid.UUID(shop["id"])
    products = f"{V1}/shops/{shop['id']}/products"
    product = await api.product(staff, shop, stock=10)
    r = await api.client.patch(
        f"{products}/{product['id']}", json={"price_cents": 1234}, headers=staff.auth
    )
    assert r.status_code == 200, r.text
    items = [ProductInFactory.build().model_dump() for _ in range(3)]
    r = await api.client.post(f"{products}/bulk", json={"items": items}, headers=staff.auth)
    assert r.status_code == 200, r.text
    order = await api.order(customer, shop, (product, 2))
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders/{order['id']}/cancel", headers=customer.auth
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(
        f"{V1}/shops/{shop['id']}/orders", headers={**staff.auth, "Accept": "text/csv"}
    )
    assert r.status_code == 200, r.text
    r = await api.client.delete(f"{products}/{product['id']}", headers=staff.auth)
    assert r.status_code == 204, r.text

    rows = await audit_rows(resources)
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert await assert_chain_intact(resources) == len(rows)
    seen = actions(rows)
    for expected in (
        "user.registered",
        "login.succeeded",
        "shop.created",
        "shop.member_set",
        "product.created",
        "product.updated",
        "products.bulk_upserted",
        "order.placed",
        "order.cancelled",
        "orders.exported",
        "product.archived",
    ):
        assert expected in seen, (expected, seen)

    by_action = {row.action: row for row in rows}
    bulk = by_action["products.bulk_upserted"]
    assert bulk.details == {"items": 3, "created": 3, "updated": 0}
    assert bulk.actor_type == "user"
    assert str(bulk.actor_id) == staff.id
    assert bulk.shop_id == shop_id
    updated = by_action["product.updated"]
    assert updated.object_id == product["id"]
    assert updated.details == {"version": 2, "fields": "price_cents"}
    cancelled = by_action["order.cancelled"]
    assert cancelled.details == {"from": "pending", "to": "cancelled", "by_staff": False}
    assert str(cancelled.actor_id) == customer.id
    exported = by_action["orders.exported"]
    assert exported.details["format"] == "text/csv"
    assert exported.details["scope"] == "all"
    # the membership change names the member (an id) and both roles
    staff_added = [
        row for row in rows if row.action == "shop.member_set" and row.object_id == staff.id
    ]
    assert staff_added[0].details == {"role_before": None, "role_after": "staff"}
    assert str(staff_added[0].actor_id) == owner.id
    for row in rows:
        # every entry of a request carries its request id and client address
        assert row.request_id, row.action
        assert row.client_address, row.action


async def test_work_that_rolls_back_leaves_no_entry(api: Api, resources: Resources) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    before = actions(await audit_rows(resources))

    body = ProductInFactory.build(sku=product["sku"]).model_dump()
    r = await api.client.post(f"{V1}/shops/{shop['id']}/products", json=body, headers=staff.auth)
    assert r.status_code == 409, r.text  # the duplicate sku rolls the request back

    assert actions(await audit_rows(resources)) == before
    await assert_chain_intact(resources)


async def test_a_rolled_back_savepoint_drops_only_its_own_entries(resources: Resources) -> None:
    async with resources.sessionmaker() as session:
        record(session, "test.outer", object_type="test")
        savepoint = await session.begin_nested()
        record(session, "test.inner", object_type="test")
        await savepoint.rollback()
        async with session.begin_nested():
            record(session, "test.released", object_type="test", details={"n": 1})
        await session.commit()
        # a transaction that rolls back entirely leaves nothing
        record(session, "test.rolled_back", object_type="test")
        await session.rollback()

    rows = await audit_rows(resources)
    assert actions(rows) == ["test.outer", "test.released"]
    # no request, no signed-in user: the system acted
    assert {(row.actor_type, row.actor_id, row.request_id) for row in rows} == {
        ("system", None, None)
    }
    await assert_chain_intact(resources)


# --- identity events: success follows the transaction, failure outlives its rollback ------


@pytest.mark.users_over_http
async def test_sign_in_success_and_failure_are_both_recorded(
    api: Api, resources: Resources
) -> None:
    user = await api.user()
    r = await api.client.post(
        f"{V1}/auth/login", json={"email": user.email, "password": "not-the-password-at-all"}
    )
    assert r.status_code == 401, r.text
    r = await api.client.post(
        f"{V1}/auth/login", json={"email": "nobody-" + user.email, "password": PASSWORD}
    )
    assert r.status_code == 401, r.text

    rows = await audit_rows(resources)
    succeeded = [row for row in rows if row.action == "login.succeeded"]
    assert len(succeeded) == 1
    assert str(succeeded[0].actor_id) == user.id
    assert succeeded[0].object_id == user.id
    assert succeeded[0].details["outcome"] == "success"
    assert succeeded[0].details["session_id"]
    failed = [row for row in rows if row.action == "login.failed"]
    # written after their requests rolled back, in a transaction of their own
    assert len(failed) == 2
    for row in failed:
        assert row.actor_type == "anonymous"
        assert row.actor_id is None
        assert row.details == {"outcome": "failure", "reason": "bad_credentials"}
        assert row.client_address
        assert row.request_id
    await assert_chain_intact(resources)


async def test_refresh_reuse_is_recorded_after_the_mid_request_commit(
    api: Api, resources: Resources
) -> None:
    email = f"{unique('reuse')}@example.com"
    await api.user(email)
    login = await api.client.post(f"{V1}/auth/login", json={"email": email, "password": PASSWORD})
    spent = login.json()["refresh_token"]
    first = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": spent})
    assert first.status_code == 200, first.text
    replay = await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": spent})
    assert replay.status_code == 401, replay.text

    rows = await audit_rows(resources)
    reuse = [row for row in rows if row.action == "refresh.reuse_detected"]
    assert len(reuse) == 1
    assert reuse[0].details["outcome"] == "denied"
    assert "refresh.succeeded" in actions(rows)
    await assert_chain_intact(resources)


async def test_a_failed_mfa_confirmation_is_recorded(api: Api, resources: Resources) -> None:
    user = await api.user()
    r = await api.client.post(f"{V1}/auth/mfa/totp", headers=user.auth)
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{V1}/auth/mfa/totp/confirm", json={"code": "000000"}, headers=user.auth
    )
    assert r.status_code == 401, r.text
    rows = await audit_rows(resources)
    assert "mfa.totp.enrolment_started" in actions(rows)
    [failed] = [row for row in rows if row.action == "mfa.totp.confirm_failed"]
    assert str(failed.actor_id) == user.id
    await assert_chain_intact(resources)


# --- no secrets, no personal data -----------------------------------------------------------


async def test_entries_hold_no_secrets_or_personal_data(api: Api, resources: Resources) -> None:
    email = f"{unique('Private.Person')}@example.com"
    display_name = "Henrietta Privacy-Testcase"
    r = await api.client.post(
        f"{V1}/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": display_name},
    )
    assert r.status_code == 201, r.text
    login = (
        await api.client.post(f"{V1}/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    wrong = await api.client.post(
        f"{V1}/auth/login", json={"email": email, "password": "wrong-" + PASSWORD}
    )
    assert wrong.status_code == 401
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    enrol = (await api.client.post(f"{V1}/auth/mfa/totp", headers=auth)).json()
    totp = pyotp.TOTP(enrol["secret"])
    confirm = await api.client.post(
        f"{V1}/auth/mfa/totp/confirm", json={"code": totp.now()}, headers=auth
    )
    assert confirm.status_code == 200, confirm.text
    recovery = confirm.json()["recovery_codes"]
    challenge = (
        await api.client.post(f"{V1}/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    assert challenge["mfa_required"] is True
    bad = await api.client.post(
        f"{V1}/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": "000000"}
    )
    assert bad.status_code == 401
    verified = await api.client.post(
        f"{V1}/auth/mfa/verify",
        json={"mfa_token": challenge["mfa_token"], "code": recovery[0]},
    )
    assert verified.status_code == 200, verified.text
    pair = verified.json()
    customer = UserHandle(r.json()["id"], email.lower(), pair["access_token"])

    owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    address = AddressInFactory.build(
        name="Zebedee Quintessential",
        line1="77 Unmistakable Lane",
        line2="Flat Ninety-Nine",
        city="Xylophone City",
        postal_code="ZX9 9QQ",
        phone="+44 20 7946 0999",
    ).model_dump(mode="json")
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json={"lines": [{"product_id": product["id"], "quantity": 1}], "shipping_address": address},
        headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text

    secrets = [
        PASSWORD,
        "wrong-" + PASSWORD,
        email,
        email.lower(),
        email.split("@")[0].lower(),
        display_name,
        login["access_token"],
        login["refresh_token"],
        pair["access_token"],
        pair["refresh_token"],
        challenge["mfa_token"],
        enrol["secret"],
        *recovery,
        owner.email,
        staff.email,
        *(value for key, value in address.items() if key != "country" and value),
    ]
    rows = await audit_rows(resources)
    assert {"login.failed", "mfa.totp.enabled", "login.mfa_failed", "order.placed"} <= set(
        actions(rows)
    )
    for row in rows:
        dumped = json.dumps(
            {c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns}, default=str
        ).lower()
        for secret in secrets:
            assert secret.lower() not in dumped, (secret, row.action)
    # and the raw table, as a database dump would show it
    async with resources.engine.connect() as conn:
        raw = [str(tuple(r)) for r in (await conn.execute(text("SELECT * FROM audit_events")))]
    assert len(raw) == len(rows)
    for line in raw:
        for secret in secrets:
            assert secret.lower() not in line.lower(), secret


@pytest.mark.parametrize(
    "details",
    [
        {"email": "x"},
        {"password": "x"},
        {"shipping_address": "x"},
        {"note": "write to someone@example.com"},
        {"note": "x" * 201},
        {"price": 1.5},
    ],
)
async def test_record_refuses_personal_data_and_free_text(
    resources: Resources, details: dict[str, Any]
) -> None:
    async with resources.sessionmaker() as session:
        with pytest.raises(AuditDetailsRejected):
            record(session, "test.refused", object_type="test", details=details)


# --- the table is append-only (PostgreSQL) ----------------------------------------------


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'login.succeeded'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
)
async def test_the_application_cannot_change_or_remove_entries(
    api: Api, resources: Resources, statement: str
) -> None:
    await api.user()
    before = [(row.seq, row.action, row.hash) for row in await audit_rows(resources)]
    assert before

    with pytest.raises(DBAPIError, match="append-only"):
        async with resources.engine.begin() as conn:
            await conn.execute(text(statement))

    after = [(row.seq, row.action, row.hash) for row in await audit_rows(resources)]
    assert after == before


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_concurrent_audited_requests_give_an_unbroken_chain(
    api: Api, resources: Resources
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    url = f"{V1}/shops/{shop['id']}/products"
    start = len(await audit_rows(resources))

    async def create(i: int) -> int:
        body = ProductInFactory.build(sku=f"CC-{i:03d}").model_dump()
        return (await api.client.post(url, json=body, headers=staff.auth)).status_code

    async def fail_login(i: int) -> int:
        body = {"email": owner.email, "password": f"wrong-{i}-{PASSWORD}"}
        return (await api.client.post(f"{V1}/auth/login", json=body)).status_code

    statuses = await asyncio.gather(
        *(create(i) for i in range(30)), *(fail_login(i) for i in range(10))
    )
    assert statuses.count(201) == 30, statuses
    assert statuses.count(401) == 10, statuses

    rows = await audit_rows(resources)
    assert len(rows) == start + 40
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert await assert_chain_intact(resources) == len(rows)


# --- the endpoints ------------------------------------------------------------------------


async def test_a_shop_owner_pages_through_the_shops_entries_newest_first(
    api: Api, resources: Resources
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    _other_owner, other_staff, other_shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop)
    await api.product(other_staff, other_shop)
    url = f"{V1}/shops/{shop['id']}/audit-events"

    first = await api.client.get(url, params={"limit": 2}, headers=owner.auth)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    page = first.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    assert 'rel="next"' in first.headers["link"]
    collected = list(page["items"])
    cursor = page["next_cursor"]
    while cursor:
        r = await api.client.get(url, params={"limit": 2, "cursor": cursor}, headers=owner.auth)
        assert r.status_code == 200, r.text
        collected.extend(r.json()["items"])
        cursor = r.json()["next_cursor"]

    seqs = [item["seq"] for item in collected]
    assert seqs == sorted(seqs, reverse=True)
    assert len(set(seqs)) == len(seqs)
    assert {item["shop_id"] for item in collected} == {shop["id"]}
    expected = [row.seq for row in await audit_rows(resources) if str(row.shop_id) == shop["id"]]
    assert sorted(seqs) == expected
    # shop.created, two memberships, three products
    assert [item["action"] for item in collected].count("product.created") == 3
    item = collected[0]
    assert {"seq", "occurred_at", "actor_type", "action", "hash", "prev_hash"} <= set(item)


async def test_only_the_shops_owners_read_its_entries(api: Api) -> None:
    owner, staff, shop = await shop_with_staff(api)
    stranger = await api.user()
    url = f"{V1}/shops/{shop['id']}/audit-events"

    assert (await api.client.get(url, headers=owner.auth)).status_code == 200
    assert_problem(await api.client.get(url, headers=staff.auth), 403)
    assert_problem(await api.client.get(url, headers=stranger.auth), 403)
    assert_problem(await api.client.get(url), 401)
    unknown = f"{V1}/shops/{uuid.uuid4()}/audit-events"
    assert_problem(await api.client.get(unknown, headers=owner.auth), 404)


@pytest.mark.users_over_http
async def test_only_platform_admins_read_the_whole_log(api: Api, resources: Resources) -> None:
    owner, _staff, shop = await shop_with_staff(api)
    root = await admin(api, resources)
    url = f"{V1}/admin/audit-events"

    assert_problem(await api.client.get(url, headers=owner.auth), 403)
    assert_problem(await api.client.get(url), 401)
    r = await api.client.get(url, params={"limit": 100}, headers=root.auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    items = r.json()["items"]
    assert [item["seq"] for item in items] == [
        row.seq for row in reversed(await audit_rows(resources))
    ]
    # entries of no shop (sign-ins) and of the shop alike
    assert {"login.succeeded", "shop.created"} <= {item["action"] for item in items}
    # an admin acts as an owner everywhere, as in the shops domain
    r = await api.client.get(f"{V1}/shops/{shop['id']}/audit-events", headers=root.auth)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"cursor": "eyJzZXEiOiJ4In0"}, {"limit": 101}, {"limit": 0}],
)
async def test_bad_page_parameters_are_refused(
    api: Api, resources: Resources, params: dict[str, Any]
) -> None:
    root = await admin(api, resources)
    r = await api.client.get(f"{V1}/admin/audit-events", params=params, headers=root.auth)
    assert_problem(r, 422)
