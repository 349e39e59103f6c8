"""Readiness follows the schema: an unmigrated database is not ready; a migrated one is."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from storefront.cli import run_migrations
from storefront.migration_head import head_revision
from tests.conftest import make_settings


async def _get(url: str, path: str = "/readyz") -> httpx2.Response:
    app = create_app(make_settings(url))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)


async def _readyz(url: str) -> httpx2.Response:
    return await _get(url)


async def test_not_ready_until_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ready.db'}"
    before = await _readyz(url)
    assert before.status_code == 503
    assert before.headers["content-type"] == "application/problem+json"
    assert before.json()["checks"]["schema"]["status"] == "down"

    # Alembic's env.py runs its own event loop: migrate from a worker thread
    await anyio.to_thread.run_sync(lambda: run_migrations(database_url=url))
    after = await _readyz(url)
    assert after.status_code == 200
    assert after.json()["checks"]["schema"] == {"status": "up", "revision": head_revision()}


async def test_health_reports_an_unmigrated_schema(tmp_path: Path) -> None:
    """/healthz said "ok" on an unmigrated database while /readyz said 503: the overall
    status names the schema as the component that is down, and is ok once migrated."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'health.db'}"
    before = await _get(url, "/healthz")
    assert before.status_code == 503
    assert before.json()["status"] == "degraded"
    assert before.json()["components"]["schema"]["status"] == "down"

    await anyio.to_thread.run_sync(lambda: run_migrations(database_url=url))
    after = await _get(url, "/healthz")
    assert after.status_code == 200
    assert after.json()["status"] == "ok"
    assert after.json()["components"]["schema"]["status"] == "up"
