"""Full mode: the process's Redis pool is opened by the lifespan and shown in /healthz."""

from __future__ import annotations

import httpx2
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from tests.conftest import _empty_tables, make_settings


async def test_healthz_reports_redis(sqlite_url: str, redis_url: str, redis_prefix: str) -> None:
    app = create_app(make_settings(sqlite_url, redis_url=redis_url, redis_prefix=redis_prefix))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            resources = app.state.resources
            assert resources.redis is not None
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                body = (await client.get("/healthz")).json()
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
    assert body["components"]["redis"]["status"] == "up"


async def test_healthz_reports_redis_down(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, redis_url="redis://127.0.0.1:1/0"))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.get("/healthz")
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
    assert r.status_code == 503
    assert r.json()["components"]["redis"]["status"] == "down"
