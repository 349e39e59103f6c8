"""Master-key rotation: every data key re-wrapped online, old and new data readable after,
an interrupted rotation resumed (on SQLite and PostgreSQL), and the operator's command."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, text

from storefront.app import create_app
from storefront.auditlog import AuditEvent
from storefront.kit.db import utcnow
from storefront.resources import Resources
from storefront.settings import Settings
from storefront.vault import LocalKeyProvider, MasterKeyError, PersonalDataVault
from storefront.vault.rotation import pending, rotate_master
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, V1, Api, UserHandle, shop_with_staff
from tests.support.servers import cli_env as _env
from tests.support.servers import run_cli as _run

K1 = base64.b64encode(b"\x01" * 32).decode()
K2 = base64.b64encode(b"\x02" * 32).decode()
BLIND = base64.b64encode(b"\x03" * 32).decode()
BEFORE = f"v1:{K1}"
DURING = f"v2:{K2},v1:{K1}"  # every process gets this first, then the rotation runs
AFTER = f"v2:{K2}"  # v1 removed once the rotation is done


def _settings(database_url: str, master_keys: str) -> Settings:
    return make_settings(
        database_url, privacy={"master_keys": master_keys, "blind_index_key": BLIND}
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return _settings(database_url, BEFORE)


@asynccontextmanager
async def process(database_url: str, master_keys: str) -> AsyncIterator[tuple[Api, Resources]]:
    """Another application process on the same database, with its own key configuration."""
    app = create_app(_settings(database_url, master_keys))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield Api(c), app.state.resources


async def _versions(resources: Resources) -> dict[str | None, int]:
    async with resources.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT master_version, COUNT(*) AS n FROM data_keys GROUP BY master_version")
        )
        return {row.master_version: int(row.n) for row in rows}


async def _customers_with_orders(
    api: Api, count: int
) -> tuple[list[UserHandle], UserHandle, dict[str, Any], list[dict[str, Any]]]:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=1000)
    customers, orders = [], []
    for n in range(count):
        customer = await api.user(f"Customer.{n}.{uuid.uuid4().hex[:6]}@Example.com")
        customers.append(customer)
        orders.append(await api.order(customer, shop, (product, 1)))
    return customers, staff, shop, orders


async def _everything_reads(
    api: Api,
    customers: list[UserHandle],
    staff: UserHandle,
    shop: dict[str, Any],
    orders: list[dict[str, Any]],
) -> None:
    """Every customer signs in by email and reads their profile; staff read every address."""
    for customer in customers:
        login = await api.client.post(
            f"{V1}/auth/login", json={"email": customer.email.upper(), "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = await api.client.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["email"] == customer.email
    listing = await api.client.get(
        f"{V1}/shops/{shop['id']}/orders", params={"limit": 100}, headers=staff.auth
    )
    assert listing.status_code == 200, listing.text
    by_id = {o["id"]: o for o in listing.json()["items"]}
    for order in orders:
        assert by_id[order["id"]]["shipping_address"] == order["shipping_address"]
        assert by_id[order["id"]]["customer_erased"] is False


async def test_rotation_rewraps_every_key_and_old_and_new_data_decrypt(
    api: Api, resources: Resources, database_url: str
) -> None:
    started = utcnow()
    old_customers, staff, shop, old_orders = await _customers_with_orders(api, 5)
    staff_and_owner = 2
    assert await _versions(resources) == {"v1": 5 + staff_and_owner}

    async with process(database_url, DURING) as (api2, resources2):
        # written during the rollout by a process that already wraps under v2
        newcomer = await api2.user("Newcomer@Example.com", display_name="New Comer")
        product = await api2.product(staff, shop, stock=10)
        new_order = await api2.order(newcomer, shop, (product, 2))
        assert await _versions(resources) == {"v1": 7, "v2": 1}

        provider = LocalKeyProvider.from_string(DURING)
        assert await pending(resources2.sessionmaker, provider) == 7
        seen: list[int] = []
        result = await rotate_master(
            resources2.sessionmaker, provider, batch_size=3, on_batch=seen.append
        )
        assert (result.rewrapped, result.batches, result.remaining) == (7, 3, 0)
        assert seen == [3, 3, 1]
        assert await _versions(resources) == {"v2": 8}
        assert await pending(resources2.sessionmaker, provider) == 0
        # a second run has nothing left to do
        again = await rotate_master(resources2.sessionmaker, provider, batch_size=3)
        assert (again.rewrapped, again.remaining) == (0, 0)

    # v1 is gone from the configuration: old and new data still read
    async with process(database_url, AFTER) as (api3, resources3):
        await _everything_reads(
            api3, [*old_customers, newcomer], staff, shop, [*old_orders, new_order]
        )
        async with resources3.sessionmaker() as session:
            logged = (
                (
                    await session.execute(
                        select(AuditEvent).where(
                            AuditEvent.action == "keys.master_rotated",
                            AuditEvent.occurred_at >= started,
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert sorted((e.object_id, e.details["rewrapped"]) for e in logged) == [
            ("v2", 0),
            ("v2", 7),
        ]

    # and a process that only knows v1 can no longer unwrap anything: it really was re-wrapped
    only_v1 = PersonalDataVault(LocalKeyProvider.from_string(BEFORE), blind_index_key=b"x" * 32)
    async with resources.sessionmaker() as session:
        subject = uuid.UUID(old_customers[0].id)
        with pytest.raises(MasterKeyError):
            await only_v1.open_for(session, subject, "pd1.1.AAAA", aad="users.email:x")


class Interrupted(Exception):
    pass


async def test_an_interrupted_rotation_resumes_to_completion(
    api: Api, resources: Resources, database_url: str
) -> None:
    customers, staff, shop, orders = await _customers_with_orders(api, 4)
    assert await _versions(resources) == {"v1": 6}
    provider = LocalKeyProvider.from_string(DURING)

    def crash_after_first_batch(count: int) -> None:
        raise Interrupted(f"killed after {count}")

    async with process(database_url, DURING) as (api2, resources2):
        with pytest.raises(Interrupted):
            await rotate_master(
                resources2.sessionmaker, provider, batch_size=4, on_batch=crash_after_first_batch
            )
        # the first batch committed, the rest waits; the application reads both halves
        assert await _versions(resources) == {"v1": 2, "v2": 4}
        assert await pending(resources2.sessionmaker, provider) == 2
        await _everything_reads(api2, customers, staff, shop, orders)

        resumed = await rotate_master(resources2.sessionmaker, provider, batch_size=4)
        assert (resumed.rewrapped, resumed.batches, resumed.remaining) == (2, 1, 0)
        assert await _versions(resources) == {"v2": 6}

    async with process(database_url, AFTER) as (api3, _):
        await _everything_reads(api3, customers, staff, shop, orders)


async def test_rotation_leaves_destroyed_keys_destroyed(
    api: Api, resources: Resources, database_url: str
) -> None:
    customers, _staff, _shop, _orders = await _customers_with_orders(api, 2)
    erased = uuid.UUID(customers[0].id)
    async with resources.sessionmaker() as session, session.begin():
        await resources.vault.destroy(session, erased)
    async with process(database_url, DURING) as (_, resources2):
        result = await rotate_master(resources2.sessionmaker, LocalKeyProvider.from_string(DURING))
        assert result.rewrapped == 3  # the other customer, the owner and the staff member
    assert await _versions(resources) == {"v2": 3, None: 1}


async def test_the_rotate_master_command(migrated_database: str) -> None:
    """As an operator runs it: new keys in the environment first, then the command."""
    async with process(migrated_database, BEFORE) as (api, _resources):
        customers = [await api.user() for _ in range(3)]
    env = _env(
        migrated_database,
        STOREFRONT_PRIVACY__MASTER_KEYS=DURING,
        STOREFRONT_PRIVACY__BLIND_INDEX_KEY=BLIND,
    )
    out = await anyio.to_thread.run_sync(
        lambda: _run(["keys", "rotate-master", "--batch-size", "2"], env)
    )
    assert "3 data keys to re-wrap under master key v2" in out
    assert "Re-wrapped 3 data keys in 2 batches; 0 left" in out
    async with process(migrated_database, AFTER) as (api2, resources2):
        assert await _versions(resources2) == {"v2": 3}
        for customer in customers:
            login = await api2.client.post(
                f"{V1}/auth/login", json={"email": customer.email, "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
