"""Retention: expired exports, ended sessions and their refresh tokens, expired idempotency
records are deleted on schedule and by `storefront retention run`; a dry run counts the same
and changes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from storefront.idempotency import IdempotencyRecord
from storefront.identity.models import AuthSession, RefreshToken
from storefront.kit.db import utcnow
from storefront.privacy.models import DataExport, ExportStatus
from storefront.privacy.retention import run_retention
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, V1, Api, shop_with_staff
from tests.support.privacy import request_export, wait_for_export
from tests.support.servers import stop

DAY = timedelta(days=1)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url, privacy={"export_record_days": 30, "session_retention_days": 30}
    )


async def _set(resources: Resources, model: Any, ident: Any, **values: Any) -> None:
    async with resources.sessionmaker() as session:
        await session.execute(update(model).where(model.id == ident).values(**values))
        await session.commit()


async def _snapshot(resources: Resources) -> dict[str, Any]:
    async with resources.sessionmaker() as session:

        async def count(model: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

        exports = (
            await session.execute(
                select(DataExport.id, DataExport.status, DataExport.archive_sealed.is_(None))
            )
        ).all()
        return {
            "exports": sorted((str(i), s.value, gone) for i, s, gone in exports),
            "sessions": await count(AuthSession),
            "refresh_tokens": await count(RefreshToken),
            "idempotency": await count(IdempotencyRecord),
        }


async def _world(api: Api, resources: Resources) -> dict[str, Any]:
    """One of everything: kept, and past its retention."""
    client = api.client
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    user = await api.user_over_http()  # signed in: the live session below is its
    uid = uuid.UUID(user.id)
    # three exports: fresh, just expired (archive goes), expired long ago (row goes)
    ids = []
    for _ in range(3):
        export = await request_export(client, user)
        assert (await wait_for_export(client, user, export["id"]))["status"] == "ready"
        ids.append(uuid.UUID(export["id"]))
    now = utcnow()
    await _set(resources, DataExport, ids[1], expires_at=now - DAY)
    await _set(resources, DataExport, ids[2], expires_at=now - 31 * DAY)
    # sessions: the live one (from api.user), one revoked yesterday (its tokens go, it stays),
    # one that expired 40 days ago and one idle for 60 days (both go, with their tokens)
    async with resources.sessionmaker() as session:
        live = await session.scalar(select(AuthSession.id).where(AuthSession.user_id == uid))
    sessions = []
    for _ in range(3):
        r = await client.post(f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 200
        async with resources.sessionmaker() as session:
            sessions.append(
                await session.scalar(
                    select(AuthSession.id)
                    .where(AuthSession.user_id == uid)
                    .order_by(AuthSession.created_at.desc(), AuthSession.id.desc())
                    .limit(1)
                )
            )
    await _set(resources, AuthSession, sessions[0], revoked_at=now - DAY, revoked_reason="logout")
    await _set(resources, AuthSession, sessions[1], expires_at=now - 40 * DAY)
    await _set(resources, AuthSession, sessions[2], last_used_at=now - 60 * DAY)
    # two idempotency records: one expired
    await api.order(user, shop, (product, 1))
    await api.order(user, shop, (product, 1))
    async with resources.sessionmaker() as session:
        record_ids = list(
            await session.scalars(select(IdempotencyRecord.id).order_by(IdempotencyRecord.id))
        )
    assert len(record_ids) == 2
    await _set(resources, IdempotencyRecord, record_ids[0], expires_at=now - timedelta(minutes=1))
    return {"exports": ids, "live": live, "sessions": sessions, "records": record_ids}


async def _until_expired(resources: Resources, *, within: float) -> None:
    """Until the (only) export is marked expired by a retention run."""
    deadline = time.monotonic() + within
    while True:
        async with resources.sessionmaker() as session:
            status = await session.scalar(select(DataExport.status))
        if status is ExportStatus.expired:
            return
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)


EXPECTED = {
    "export_archives": 1,
    "export_records": 1,
    "refresh_tokens": 3,
    "sessions": 2,
    "idempotency_records": 1,
    "audit_addresses": 0,  # every entry is recent (tests/audit/test_audit_privacy.py)
}


async def test_dry_run_counts_and_changes_nothing_then_the_real_run_deletes(
    api: Api, resources: Resources, settings: Settings
) -> None:
    world = await _world(api, resources)
    before = await _snapshot(resources)

    dry = await run_retention(resources, settings, dry_run=True)
    assert dry.dry_run is True
    assert dry.counts == EXPECTED
    assert await _snapshot(resources) == before

    real = await run_retention(resources, settings)
    assert real.counts == EXPECTED
    after = await _snapshot(resources)
    fresh, expired, _old = world["exports"]
    assert after["exports"] == sorted(
        [(str(fresh), "ready", False), (str(expired), "expired", True)]
    )
    assert after["sessions"] == before["sessions"] - 2
    assert after["refresh_tokens"] == before["refresh_tokens"] - 3
    assert after["idempotency"] == 1
    async with resources.sessionmaker() as session:
        remaining = set(await session.scalars(select(AuthSession.id)))
        tokens_of = set(await session.scalars(select(RefreshToken.session_id)))
    assert {world["live"], world["sessions"][0]} <= remaining
    assert world["sessions"][1] not in remaining
    assert world["sessions"][2] not in remaining
    assert world["live"] in tokens_of
    assert world["sessions"][0] not in tokens_of

    # nothing left to do
    again = await run_retention(resources, settings)
    assert again.total == 0


async def test_a_backlog_larger_than_a_batch_goes_in_several_short_transactions(
    api: Api, resources: Resources, settings: Settings
) -> None:
    """Batch size 1: the same world, deleted one row per category per transaction, with the
    same totals and the same end state as one big pass."""
    world = await _world(api, resources)
    small = settings.model_copy(
        update={"privacy": settings.privacy.model_copy(update={"retention_batch_size": 1})}
    )
    assert (await run_retention(resources, small, dry_run=True)).counts == EXPECTED
    report = await run_retention(resources, small)
    assert report.counts == EXPECTED
    # the biggest category (3 refresh tokens) needs 3 full batches and a 4th that finds less
    assert report.batches == max(EXPECTED.values()) + 1
    after = await _snapshot(resources)
    fresh, expired, _old = world["exports"]
    assert after["exports"] == sorted(
        [(str(fresh), "ready", False), (str(expired), "expired", True)]
    )
    assert after["idempotency"] == 1
    assert (await run_retention(resources, small)).total == 0


async def test_the_live_session_keeps_working_after_retention(
    api: Api, resources: Resources, settings: Settings
) -> None:
    user = await api.user()
    login = await api.client.post(
        f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    await run_retention(resources, settings)
    r = await api.client.post(
        f"{V1}/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert r.status_code == 200, r.text


async def test_the_cli_prints_per_category(
    api: Api, resources: Resources, database_url: str, tmp_path: Any
) -> None:
    await _world(api, resources)
    before = await _snapshot(resources)
    env = {
        "STOREFRONT_DATABASE_URL": database_url,
        "STOREFRONT_PRIVACY__EXPORT_RECORD_DAYS": "30",
        "STOREFRONT_PRIVACY__SESSION_RETENTION_DAYS": "30",
        "PATH": "/usr/bin:/bin",
    }

    def cli(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "storefront.cli", "retention", "run", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = await asyncio.to_thread(cli, "--dry-run")
    assert "dry run" in out
    for name, count in EXPECTED.items():
        assert f"{name:20} would delete {count}" in out, out
    assert await _snapshot(resources) == before
    out = await asyncio.to_thread(cli)
    for name, count in EXPECTED.items():
        assert f"{name:20} deleted {count}" in out, out
    assert (await _snapshot(resources))["idempotency"] == 1


async def test_retention_runs_on_a_schedule(database_url: str) -> None:
    import httpx2
    from asgi_lifespan import LifespanManager

    from storefront.app import create_app
    from tests.conftest import _empty_tables
    from tests.support.factories import Api as ApiHelper

    app = create_app(make_settings(database_url, privacy={"retention_interval_seconds": 1}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                user = await ApiHelper(client).user()
                export = await request_export(client, user)
                await wait_for_export(client, user, export["id"])
                await _set(
                    resources, DataExport, uuid.UUID(export["id"]), expires_at=utcnow() - DAY
                )
                await _until_expired(resources, within=10)
        finally:
            await _empty_tables(resources)


async def test_the_worker_builds_exports_and_runs_retention(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """With a broker, the export job and the retention schedule run in `storefront worker`."""
    import os

    import httpx2
    from asgi_lifespan import LifespanManager

    from storefront.app import create_app
    from tests.conftest import _empty_tables
    from tests.support.factories import Api as ApiHelper

    queue = f"{redis_prefix}jobs"
    settings = make_settings(
        database_url,
        broker_url=redis_url,
        redis_prefix=redis_prefix,
        jobs={"queue": queue},
        privacy={"retention_interval_seconds": 1},
    )
    env = {
        **os.environ,
        "STOREFRONT_ENVIRONMENT": "test",
        "STOREFRONT_DATABASE_URL": database_url,
        "STOREFRONT_BROKER_URL": redis_url,
        "STOREFRONT_REDIS_PREFIX": redis_prefix,
        "STOREFRONT_JOBS__QUEUE": queue,
        "STOREFRONT_PRIVACY__RETENTION_INTERVAL_SECONDS": "1",
        "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT": "0",
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, then polled off the loop
        [sys.executable, "-m", "storefront.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = create_app(settings)
    try:
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
            resources: Resources = app.state.resources
            try:
                transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                    user = await ApiHelper(client).user()
                    export = await request_export(client, user)
                    status = await wait_for_export(client, user, export["id"], wait_seconds=45)
                    assert status["status"] == "ready", status
                    await _set(
                        resources, DataExport, uuid.UUID(export["id"]), expires_at=utcnow() - DAY
                    )
                    await _until_expired(resources, within=20)
            finally:
                await _empty_tables(resources)
    finally:
        text = await asyncio.to_thread(stop, worker)
    assert worker.returncode == 0, text
