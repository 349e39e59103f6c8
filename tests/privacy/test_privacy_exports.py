"""GDPR export (articles 15 and 20): a background job builds a JSON archive of everything
held about the caller; only they can read it; it expires."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx2
import orjson
import pytest
from sqlalchemy import select, update

from storefront.kit.db import utcnow
from storefront.privacy.models import DataExport, ExportStatus
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, V1, Api, UserHandle, shop_with_staff
from tests.support.privacy import CONSENTS, EXPORTS, request_export, wait_for_export
from tests.support.problems import assert_problem


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, privacy={"export_ttl_hours": 5})


async def _ready_archive(api: Api, user: UserHandle) -> tuple[str, httpx2.Response]:
    export = await request_export(api.client, user)
    assert export["status"] == "queued"
    status = await wait_for_export(api.client, user, export["id"])
    assert status["status"] == "ready", status
    r = await api.client.get(status["links"]["download"], headers=user.auth)
    assert r.status_code == 200, r.text
    return export["id"], r


@pytest.mark.users_over_http
async def test_the_archive_holds_every_category(api: Api, resources: Resources) -> None:
    client = api.client
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, name="Tea, 250 g", price_cents=700)
    customer = await api.user(display_name="Grace Hopper")
    # a second sign-in: its refresh token must not appear in the archive
    login = await client.post(
        f"{V1}/auth/login", json={"email": customer.email, "password": PASSWORD}
    )
    refresh_token = login.json()["refresh_token"]
    order = await api.order(customer, shop, (product, 3))
    someone_else = await api.user(display_name="Someone Else")
    await api.order(someone_else, shop, (product, 1))
    await client.put(CONSENTS, json={"product_analytics": True}, headers=someone_else.auth)
    await client.put(CONSENTS, json={"marketing_email": True}, headers=customer.auth)
    await client.put(CONSENTS, json={"marketing_email": False}, headers=customer.auth)

    export_id, r = await _ready_archive(api, customer)
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="storefront-export-{export_id}.json"'
    )
    archive: dict[str, Any] = orjson.loads(r.content)

    assert archive["user_id"] == customer.id
    assert archive["profile"]["email"] == customer.email
    assert archive["profile"]["display_name"] == "Grace Hopper"
    assert len(archive["sessions"]) == 2
    assert all(s["ip_address"] for s in archive["sessions"])
    assert archive["two_factor"] == {
        "totp_enabled": False,
        "totp_confirmed_at": None,
        "recovery_codes_left": 0,
    }
    # no token material anywhere
    raw = r.content.decode()
    assert someone_else.id not in raw  # nothing about anyone else
    assert someone_else.email not in raw
    for secret in (refresh_token, customer.token, login.json()["access_token"]):
        assert secret not in raw
    assert "token_hash" not in raw

    consents = archive["consents"]
    assert [(h["purpose"], h["granted"]) for h in consents["history"]] == [
        ("marketing_email", True),
        ("marketing_email", False),
    ]
    assert {c["purpose"]: c["granted"] for c in consents["current"]} == {
        "marketing_email": False,
        "product_analytics": False,
    }

    [exported] = archive["orders"]
    assert exported["id"] == order["id"]
    assert exported["shop_id"] == shop["id"]
    assert exported["total_cents"] == 2100
    assert [(line["name"], line["quantity"]) for line in exported["lines"]] == [("Tea, 250 g", 3)]
    assert exported["shipping_address"]["name"] == "Ada Lovelace"
    assert exported["shipping_address"]["phone"] == "+44 20 7946 0000"
    assert exported["customer_erased"] is False

    actions = [e["action"] for e in archive["audit_entries"]]
    assert "user.export_requested" in actions
    assert "user.consents_changed" in actions
    assert all(
        e["actor_id"] == customer.id or e["object_id"] == customer.id
        for e in archive["audit_entries"]
    )

    processing = {p["activity"]: p for p in archive["processing"]}
    assert {"account", "sessions", "orders", "consents", "audit_log", "data_exports"} <= set(
        processing
    )
    for activity in processing.values():
        assert activity["purpose"]
        assert activity["legal_basis"]
        assert activity["retention"]
        assert activity["recipients"]
    assert "5 hours" in processing["data_exports"]["retention"]  # the configured TTL


async def test_the_archive_is_sealed_at_rest(api: Api, resources: Resources) -> None:
    customer = await api.user(display_name="Grace Hopper")
    export_id, _ = await _ready_archive(api, customer)
    async with resources.sessionmaker() as session:
        row = (
            await session.execute(
                select(DataExport.archive_sealed, DataExport.size_bytes).where(
                    DataExport.id == uuid.UUID(export_id)
                )
            )
        ).one()
    assert row.archive_sealed.startswith("pd1.")
    assert customer.email not in row.archive_sealed
    assert "Grace Hopper" not in row.archive_sealed
    assert row.size_bytes > 0


async def test_no_one_else_can_read_an_export(api: Api, client: httpx2.AsyncClient) -> None:
    owner = await api.user()
    other = await api.user()
    export_id, _ = await _ready_archive(api, owner)
    for path in (f"{EXPORTS}/{export_id}", f"{EXPORTS}/{export_id}/download"):
        assert_problem(await client.get(path, headers=other.auth), 404)
        assert_problem(await client.get(path), 401)
    assert_problem(await client.post(EXPORTS), 401)
    assert_problem(await client.get(f"{EXPORTS}/{uuid.uuid4()}", headers=owner.auth), 404)


async def test_an_export_expires(
    api: Api, client: httpx2.AsyncClient, resources: Resources
) -> None:
    owner = await api.user()
    export_id, _ = await _ready_archive(api, owner)
    status = (await client.get(f"{EXPORTS}/{export_id}", headers=owner.auth)).json()
    expires = status["expires_at"]
    completed = status["completed_at"]
    assert expires
    assert completed
    from datetime import datetime

    ttl = datetime.fromisoformat(expires) - datetime.fromisoformat(completed)
    assert ttl == timedelta(hours=5)

    async with resources.sessionmaker() as session:
        await session.execute(
            update(DataExport)
            .where(DataExport.id == uuid.UUID(export_id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    status = (await client.get(f"{EXPORTS}/{export_id}", headers=owner.auth)).json()
    assert status["status"] == "expired"
    assert status["links"]["download"] is None
    assert status["size_bytes"] is None
    r = await client.get(f"{EXPORTS}/{export_id}/download", headers=owner.auth)
    assert_problem(r, 410, slug="gone")


async def test_an_unfinished_export_cannot_be_downloaded(
    api: Api, client: httpx2.AsyncClient, resources: Resources
) -> None:
    owner = await api.user()
    async with resources.sessionmaker() as session:
        export = DataExport(
            user_id=uuid.UUID(owner.id),
            status=ExportStatus.queued,
            expires_at=utcnow() + timedelta(hours=1),
        )
        session.add(export)
        await session.commit()
        export_id = export.id
    status = (await client.get(f"{EXPORTS}/{export_id}", headers=owner.auth)).json()
    assert status["status"] == "queued"
    assert status["links"] == {"self": f"{EXPORTS}/{export_id}", "download": None}
    r = await client.get(f"{EXPORTS}/{export_id}/download", headers=owner.auth)
    assert_problem(r, 409)


async def test_exports_are_rate_limited_like_other_expensive_routes(database_url: str) -> None:
    from asgi_lifespan import LifespanManager

    from storefront.app import create_app
    from tests.conftest import _empty_tables

    settings = make_settings(
        database_url,
        protection={
            "auth_rate": "10000/minute",
            "auth_account_rate": "10000/minute",
            "expensive_rate": "2/hour",
        },
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                user = await Api(client).user()
                accepted = [await request_export(client, user) for _ in range(2)]
                r = await client.post(EXPORTS, headers=user.auth)
                assert_problem(r, 429)
                assert "retry-after" in r.headers
                for export in accepted:  # let the jobs finish before the tables are emptied
                    await wait_for_export(client, user, export["id"])
        finally:
            await _empty_tables(app.state.resources)


async def test_the_job_is_safe_to_deliver_twice_and_fails_cleanly(
    api: Api, resources: Resources
) -> None:
    from storefront.privacy.tasks import build_export

    owner = await api.user()
    export_id, _ = await _ready_archive(api, owner)
    async with resources.sessionmaker() as session:
        sealed = await session.scalar(
            select(DataExport.archive_sealed).where(DataExport.id == uuid.UUID(export_id))
        )
    # a second delivery of a finished job changes nothing
    await build_export.func(resources, export_id=export_id)
    async with resources.sessionmaker() as session:
        again = await session.scalar(
            select(DataExport.archive_sealed).where(DataExport.id == uuid.UUID(export_id))
        )
    assert again == sealed

    # the user's key destroyed before the job ran (erased meanwhile): failed, nothing sealed
    async with resources.sessionmaker() as session:
        export = DataExport(
            user_id=uuid.UUID(owner.id),
            status=ExportStatus.queued,
            expires_at=utcnow() + timedelta(hours=1),
        )
        session.add(export)
        await resources.vault.destroy(session, uuid.UUID(owner.id))
        await session.commit()
        pending_id = export.id
    await build_export.func(resources, export_id=str(pending_id))
    async with resources.sessionmaker() as session:
        row = (
            await session.execute(select(DataExport).where(DataExport.id == pending_id))
        ).scalar_one()
    assert row.status is ExportStatus.failed
    assert row.archive_sealed is None
    assert row.completed_at is not None
