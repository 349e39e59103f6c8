"""Personal data in the audit log (decision records 0115 and 0116).

Requests come through a trusted proxy (127.0.0.1, the test client's peer) with
``X-Forwarded-For``, so every person has an address of their own: the owner, the staff
member and the customer. What is checked: a shop's owners never see a customer's address or
id; erasure nulls the customer's addresses in the audit log through the PostgreSQL trigger
(active: the application's ordinary session) and the chain still verifies, with
``storefront audit verify`` too; an export holds no one else's address or id; tampering is
still detected, on an erased entry as on any other.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import uuid
from datetime import timedelta

import anyio
import orjson
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from storefront.auditlog import AuditEvent, record, verify_chain
from storefront.kit.db import snapshot_session, utcnow
from storefront.privacy.retention import run_retention
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, V1, Api, UserHandle
from tests.support.identity import promote_to_admin
from tests.support.privacy import EXPORTS, ME, request_export, wait_for_export
from tests.support.servers import CLI
from tests.support.servers import cli_env as _env

OWNER_IP = "198.51.100.11"
STAFF_IP = "198.51.100.22"
CUSTOMER_IP = "203.0.113.33"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, trusted_proxies=["127.0.0.1/32"])


def via(user: UserHandle, address: str) -> dict[str, str]:
    return {**user.auth, "X-Forwarded-For": address}


async def _signed_in(api: Api, address: str) -> UserHandle:
    """A new user whose sign-in came from ``address``."""
    user = await api.user()
    r = await api.client.post(
        f"{V1}/auth/login",
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": address},
    )
    assert r.status_code == 200, r.text
    return UserHandle(user.id, user.email, r.json()["access_token"])


async def _scene(api: Api) -> tuple[UserHandle, UserHandle, UserHandle, dict[str, object]]:
    """Owner, staff and customer, each from their own address, acting in one shop."""
    client = api.client
    owner = await _signed_in(api, OWNER_IP)
    staff = await _signed_in(api, STAFF_IP)
    customer = await _signed_in(api, CUSTOMER_IP)
    r = await client.post(
        f"{V1}/shops",
        json={"name": "Audit Shop", "slug": f"audit-{uuid.uuid4().hex[:10]}"},
        headers=via(owner, OWNER_IP),
    )
    assert r.status_code == 201, r.text
    shop = r.json()
    r = await client.put(
        f"{V1}/shops/{shop['id']}/members/{staff.id}",
        json={"role": "staff"},
        headers=via(owner, OWNER_IP),
    )
    assert r.status_code == 200, r.text
    product = await api.product(staff, shop, stock=5)
    r = await client.patch(
        f"{V1}/shops/{shop['id']}/products/{product['id']}",
        json={"price_cents": 990},
        headers=via(staff, STAFF_IP),
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{V1}/shops/{shop['id']}/orders",
        json=api.order_body((product, 1)),
        headers={**via(customer, CUSTOMER_IP), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{V1}/shops/{shop['id']}/orders/{r.json()['id']}/cancel",
        headers=via(customer, CUSTOMER_IP),
    )
    assert r.status_code == 200, r.text
    return owner, staff, customer, shop


async def _chain_ok(resources: Resources) -> int:
    async with snapshot_session(resources.sessionmaker) as session, session.begin():
        result = await verify_chain(session, batch_size=5)
    assert result.broken is None, result.broken
    return result.checked


async def _rows(resources: Resources) -> list[AuditEvent]:
    async with resources.sessionmaker() as session:
        return list(await session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def _cli_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [*CLI, "audit", "verify", "--batch-size", "4"],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- the shop's view ---------------------------------------------------------------------------


async def test_a_shops_owner_sees_no_customer_address_or_id(api: Api, resources: Resources) -> None:
    owner, staff, customer, shop = await _scene(api)
    # the log itself has them (the platform's view, below)
    customer_rows = [r for r in await _rows(resources) if r.actor_id == uuid.UUID(customer.id)]
    assert CUSTOMER_IP in {r.client_address for r in customer_rows}

    r = await api.client.get(
        f"{V1}/shops/{shop['id']}/audit-events", params={"limit": 100}, headers=owner.auth
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    raw = r.text
    for secret in (CUSTOMER_IP, OWNER_IP, STAFF_IP, customer.id):
        assert secret not in raw, secret
    for field in ("client_address", "request_id", "trace_id"):
        assert all(field not in item for item in items), field
    by_action = {item["action"]: item for item in items}
    placed = by_action["order.placed"]
    assert (placed["actor_role"], placed["actor_id"]) == ("other_user", None)
    assert by_action["order.cancelled"]["actor_role"] == "other_user"
    # what an owner legitimately needs: which member did what
    changed = by_action["product.updated"]
    assert (changed["actor_role"], changed["actor_id"]) == ("staff", staff.id)
    assert (by_action["shop.created"]["actor_role"], by_action["shop.created"]["actor_id"]) == (
        "you",
        owner.id,
    )


async def test_the_platform_view_keeps_the_addresses(api: Api, resources: Resources) -> None:
    _owner, _staff, customer, _shop = await _scene(api)
    root = await api.user()
    await promote_to_admin(resources, root)
    r = await api.client.get(f"{V1}/admin/audit-events", params={"limit": 100}, headers=root.auth)
    assert r.status_code == 200, r.text
    placed = next(i for i in r.json()["items"] if i["action"] == "order.placed")
    assert (placed["actor_id"], placed["client_address"]) == (customer.id, CUSTOMER_IP)
    assert placed["chain_version"] == 2
    assert placed["personal_commitment"]


# --- erasure -------------------------------------------------------------------------------------


@pytest.mark.users_over_http
async def test_erasure_nulls_the_customers_addresses_and_the_chain_still_verifies(
    api: Api, resources: Resources, settings: Settings
) -> None:
    owner, _staff, customer, shop = await _scene(api)
    before = await _rows(resources)
    assert any(r.client_address == CUSTOMER_IP for r in before)

    r = await api.client.delete(ME, headers=via(customer, CUSTOMER_IP))
    assert r.status_code == 202, r.text

    rows = await _rows(resources)
    customer_id = uuid.UUID(customer.id)
    mine = [r for r in rows if r.actor_id == customer_id]
    assert {r.action for r in mine} >= {"order.placed", "order.cancelled", "user.erased"}
    assert all(r.client_address is None and r.personal_salt is None for r in mine)
    # the entries that had an address keep their commitment (what the hash covers)
    assert all(r.personal_commitment for r in mine if r.seq <= before[-1].seq)
    assert CUSTOMER_IP not in {r.client_address for r in rows}
    # other people's addresses are untouched
    assert OWNER_IP in {r.client_address for r in rows}
    # nothing else changed: every old entry has its old hash and action
    old = {r.seq: (r.hash, r.action, r.actor_id) for r in before}
    assert {r.seq: (r.hash, r.action, r.actor_id) for r in rows if r.seq in old} == old

    assert await _chain_ok(resources) == len(rows)
    cli = await anyio.to_thread.run_sync(lambda: _cli_verify(settings.database_url))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"OK: {len(rows)} entries" in cli.stdout

    # and the owner's view still shows none of it
    r = await api.client.get(
        f"{V1}/shops/{shop['id']}/audit-events", params={"limit": 100}, headers=owner.auth
    )
    assert customer.id not in r.text
    assert CUSTOMER_IP not in r.text


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_the_trigger_lets_only_the_erasure_update_through(
    api: Api, resources: Resources
) -> None:
    _owner, _staff, customer, _shop = await _scene(api)
    customer_id = uuid.UUID(customer.id)
    row = next(r for r in await _rows(resources) if r.actor_id == customer_id)
    refused = [
        update(AuditEvent).values(action="order.innocent"),
        update(AuditEvent).values(client_address="192.0.2.1"),
        # nulling the address but touching anything else as well
        update(AuditEvent).values(client_address=None, personal_salt=None, object_id="x"),
        update(AuditEvent).values(
            client_address=None, personal_salt=None, personal_commitment=None
        ),
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            async with resources.sessionmaker() as session, session.begin():
                await session.execute(
                    statement.where(AuditEvent.seq == row.seq).execution_options(
                        synchronize_session=False
                    )
                )
    with pytest.raises(DBAPIError, match="append-only"):
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": row.seq})

    # an entry with no commitment (no address: a job's) has nothing to erase: refused too
    async def job() -> None:
        async with resources.sessionmaker() as session, session.begin():
            record(session, "test.recorded", object_type="test", actor_id=customer_id)

    # outside any request (a fresh context: no request's address)
    await asyncio.get_running_loop().create_task(job(), context=contextvars.Context())
    bare = (await _rows(resources))[-1]
    assert (bare.client_address, bare.personal_commitment) == (None, None)
    with pytest.raises(DBAPIError, match="append-only"):
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.seq == bare.seq)
                .values(actor_id=None)
                .execution_options(synchronize_session=False)
            )
    await _chain_ok(resources)


async def test_tampering_is_still_detected_after_an_erasure(
    api: Api, resources: Resources, settings: Settings
) -> None:
    _owner, _staff, customer, _shop = await _scene(api)
    r = await api.client.delete(ME, headers=via(customer, CUSTOMER_IP))
    assert r.status_code == 202, r.text
    rows = await _rows(resources)
    erased = next(
        r for r in rows if r.action == "order.placed" and r.personal_commitment is not None
    )
    assert erased.client_address is None
    present = next(r for r in rows if r.client_address == OWNER_IP)

    async def tamper(sql: str, seq: int) -> None:
        async with resources.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # the superuser switching the trigger off: what the chain exists to expose
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(sql), {"seq": seq})

    # a non-personal field of an erased entry
    await tamper("UPDATE audit_events SET action = 'order.innocent' WHERE seq = :seq", erased.seq)
    async with snapshot_session(resources.sessionmaker) as session, session.begin():
        result = await verify_chain(session)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (erased.seq, "hash mismatch")
    cli = await anyio.to_thread.run_sync(lambda: _cli_verify(settings.database_url))
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert f"BROKEN at entry {erased.seq}: hash mismatch" in cli.stdout
    await tamper("UPDATE audit_events SET action = 'order.placed' WHERE seq = :seq", erased.seq)
    await _chain_ok(resources)

    # the chain version is covered too
    await tamper("UPDATE audit_events SET chain_version = 3 WHERE seq = :seq", erased.seq)
    async with snapshot_session(resources.sessionmaker) as session, session.begin():
        result = await verify_chain(session)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (erased.seq, "hash mismatch")
    await tamper("UPDATE audit_events SET chain_version = 2 WHERE seq = :seq", erased.seq)
    await _chain_ok(resources)

    # someone else's address, rewritten: it no longer matches its commitment
    await tamper(
        "UPDATE audit_events SET client_address = '192.0.2.99' WHERE seq = :seq", present.seq
    )
    async with snapshot_session(resources.sessionmaker) as session, session.begin():
        result = await verify_chain(session)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (present.seq, "personal fields mismatch")


# --- exports -------------------------------------------------------------------------------------


async def test_a_staff_members_export_holds_no_one_elses_address_or_id(api: Api) -> None:
    owner, staff, _customer, shop = await _scene(api)
    export = await request_export(api.client, staff)
    assert (await wait_for_export(api.client, staff, export["id"]))["status"] == "ready"
    r = await api.client.get(f"{EXPORTS}/{export['id']}/download", headers=staff.auth)
    assert r.status_code == 200, r.text
    for secret in (OWNER_IP, CUSTOMER_IP, owner.id):
        assert secret not in r.text, secret
    entries = orjson.loads(r.content)["audit_entries"]
    added = next(
        e for e in entries if e["action"] == "shop.member_set" and e["shop_id"] == shop["id"]
    )
    assert added["object_id"] == staff.id  # it is about them: they see it happened
    assert (added["actor_type"], added["actor_id"], added["client_address"]) == (
        "other_user",
        None,
        None,
    )
    # their own entries keep their own address
    own = [e for e in entries if e["actor_id"] == staff.id]
    assert own
    assert STAFF_IP in {e["client_address"] for e in own}


# --- retention -----------------------------------------------------------------------------------


async def test_retention_nulls_old_addresses_and_the_chain_still_verifies(
    api: Api, resources: Resources, settings: Settings
) -> None:
    await _scene(api)
    days = settings.privacy.audit_address_retention_days
    old, recent = utcnow() - timedelta(days=days + 1), utcnow() - timedelta(days=days - 1)
    async with resources.sessionmaker() as session, session.begin():
        for when, address in ((old, "192.0.2.1"), (old, "192.0.2.2"), (recent, "192.0.2.3")):
            record(
                session,
                "test.recorded",
                object_type="test",
                client_address=address,
                occurred_at=when,
            )
    one_per_batch = settings.model_copy(
        update={"privacy": settings.privacy.model_copy(update={"retention_batch_size": 1})}
    )

    dry = await run_retention(resources, one_per_batch, dry_run=True)
    assert dry.counts["audit_addresses"] == 2
    report = await run_retention(resources, one_per_batch)
    assert report.counts["audit_addresses"] == 2

    addresses = {r.client_address for r in await _rows(resources)}
    assert "192.0.2.1" not in addresses
    assert "192.0.2.2" not in addresses
    assert {"192.0.2.3", CUSTOMER_IP} <= addresses  # younger than the period: kept
    assert await _chain_ok(resources) == len(await _rows(resources))
    assert (await run_retention(resources, settings)).counts["audit_addresses"] == 0
