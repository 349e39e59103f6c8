"""Migration 0003 on a database with data: plaintext rows are sealed (and still work through
the application), and the downgrade brings the plaintext back (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import anyio
import httpx2
import sqlalchemy as sa
from alembic import command
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from storefront.auth.passwords import PasswordHasher
from storefront.kit.db import create_engine, utcnow
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.migrating.test_migrations import _config
from tests.support.factories import PASSWORD, V1

KEYS = {
    "master_keys": "v7:" + base64.b64encode(b"\x07" * 32).decode(),
    "blind_index_key": base64.b64encode(b"\x08" * 32).decode(),
}
ADDRESS = {
    "name": "Mary Somerville",
    "line1": "3 Orbit Lane",
    "line2": None,
    "city": "Jedburgh",
    "postal_code": "TD8 6AA",
    "country": "GB",
    "phone": "+44 1835 555 010",
}
USERS = [("mary.somerville@example.com", "Mary Somerville"), ("caroline@example.com", "Caroline")]

meta = sa.MetaData()
users_v2 = sa.Table(
    "users",
    meta,
    sa.Column("id", sa.Uuid()),
    sa.Column("email", sa.String()),
    sa.Column("display_name", sa.String()),
    sa.Column("password_hash", sa.String()),
    sa.Column("is_active", sa.Boolean()),
    sa.Column("is_admin", sa.Boolean()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
shops_v2 = sa.Table(
    "shops",
    meta,
    sa.Column("id", sa.Uuid()),
    sa.Column("name", sa.String()),
    sa.Column("slug", sa.String()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
orders_v2 = sa.Table(
    "orders",
    meta,
    sa.Column("id", sa.Uuid()),
    sa.Column("shop_id", sa.Uuid()),
    sa.Column("customer_id", sa.Uuid()),
    sa.Column("status", sa.String()),
    sa.Column("currency", sa.String()),
    sa.Column("total_cents", sa.BigInteger()),
    sa.Column("shipping_address", sa.JSON()),
    sa.Column("version", sa.Integer()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


async def _sql(url: str, *statements: Any) -> list[list[dict[str, Any]]]:
    engine = create_engine(url)
    out = []
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(statement)
                out.append([dict(r._mapping) for r in result] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return out


async def test_existing_rows_are_sealed_and_the_downgrade_restores_them(
    empty_database: str,
) -> None:
    settings: Settings = make_settings(empty_database, privacy=KEYS)
    cfg = _config(empty_database)
    cfg.attributes["settings"] = settings
    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "0002"))

    now = utcnow()
    password_hash = await PasswordHasher(
        time_cost=1, memory_kib=1024, parallelism=1, max_threads=1
    ).hash(PASSWORD)
    user_ids = [uuid.uuid4() for _ in USERS]
    shop_id, order_id = uuid.uuid4(), uuid.uuid4()
    await _sql(
        empty_database,
        users_v2.insert().values(
            [
                {
                    "id": uid,
                    "email": email,
                    "display_name": name,
                    "password_hash": password_hash,
                    "is_active": True,
                    "is_admin": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for uid, (email, name) in zip(user_ids, USERS, strict=True)
            ]
        ),
        shops_v2.insert().values(
            id=shop_id, name="Old Shop", slug="old-shop", created_at=now, updated_at=now
        ),
        orders_v2.insert().values(
            id=order_id,
            shop_id=shop_id,
            customer_id=user_ids[0],
            status="pending",
            currency="GBP",
            total_cents=1999,
            shipping_address=ADDRESS,
            version=1,
            created_at=now,
            updated_at=now,
        ),
    )

    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "0003"))

    users, orders, keys = await _sql(
        empty_database,
        sa.text("SELECT * FROM users"),
        sa.text("SELECT * FROM orders"),
        sa.text("SELECT * FROM data_keys"),
    )
    dump = json.dumps([users, orders, keys], default=str).lower()
    for value in ["somerville", "caroline", "orbit lane", "jedburgh", "1835"]:
        assert value not in dump
    assert len(keys) == 2
    assert {k["master_version"] for k in keys} == {"v7"}
    assert all(u["email_sealed"].startswith("pd1.1.") for u in users)
    assert orders[0]["shipping_address_sealed"].startswith("pd1.1.")

    # the application (same keys) signs the old users in by email and reads their data
    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "head"))
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            login = await client.post(
                f"{V1}/auth/login",
                json={"email": "Mary.Somerville@EXAMPLE.com", "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = await client.get(f"{V1}/users/me", headers=auth)
            assert me.json()["email"] == USERS[0][0]
            assert me.json()["display_name"] == USERS[0][1]
            order = await client.get(f"{V1}/shops/{shop_id}/orders/{order_id}", headers=auth)
            assert order.status_code == 200, order.text
            assert order.json()["shipping_address"] == ADDRESS
            duplicate = await client.post(
                f"{V1}/auth/register",
                json={"email": "CAROLINE@example.com", "password": PASSWORD, "display_name": "C"},
            )
            assert duplicate.status_code == 409

    await anyio.to_thread.run_sync(lambda: command.downgrade(cfg, "0002"))
    users, orders = await _sql(
        empty_database,
        sa.select(users_v2.c.id, users_v2.c.email, users_v2.c.display_name),
        sa.select(orders_v2.c.id, orders_v2.c.shipping_address),
    )
    assert {(u["id"], u["email"], u["display_name"]) for u in users} == {
        (uid, email, name) for uid, (email, name) in zip(user_ids, USERS, strict=True)
    }
    assert [(o["id"], o["shipping_address"]) for o in orders] == [(order_id, ADDRESS)]
