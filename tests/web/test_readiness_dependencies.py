"""Readiness waits for every dependency the settings declare, each within a short timeout."""

from __future__ import annotations

import socket
import time

import httpx2
import pytest
from asgi_lifespan import LifespanManager

from storefront.app import create_app
from storefront.web import health
from tests.conftest import _empty_tables, make_settings


async def _get(app: object, path: str) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


async def test_ready_with_redis_up_and_the_check_is_listed(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = create_app(make_settings(sqlite_url, redis_url=redis_url, redis_prefix=redis_prefix))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            r = await _get(app, "/readyz")
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["redis"]["status"] == "up"


async def test_not_ready_while_configured_redis_is_down_and_it_says_which(
    sqlite_url: str,
) -> None:
    settings = make_settings(
        sqlite_url,
        redis_url="redis://127.0.0.1:1/0",
        observability={"readiness_timeout_seconds": 0.5},
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            started = time.perf_counter()
            r = await _get(app, "/readyz")
            elapsed = time.perf_counter() - started
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert "redis" in body["detail"]
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["db_primary"]["status"] == "up"
    assert elapsed < 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_broker_check_connects_with_a_bound(redis_url: str) -> None:
    up = await health.check_broker(redis_url, 1.0)
    assert up["status"] == "up"
    down = await health.check_broker(f"amqp://guest:guest@127.0.0.1:{_closed_port()}/", 1.0)
    assert down["status"] == "down"
    assert "guest" not in str(down)


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
async def test_the_broker_is_the_workers_readiness_not_the_apis(
    sqlite_url: str, scheme: str
) -> None:
    # decisions 0111, 0112: an API whose broker is down starts and is ready (jobs wait in the
    # outbox; /healthz says "degraded"); a worker without its broker is not ready
    url = f"{scheme}://127.0.0.1:{_closed_port()}/"
    app = create_app(make_settings(sqlite_url, broker_url=url))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert set(ready.json()["checks"]) == {"db_primary", "schema"}
                health_body = (await client.get("/healthz")).json()
                assert health_body["components"]["broker"]["status"] == "degraded"
            resources = app.state.resources
            worker = await health.evaluate(resources, role="worker", within=0.5, broker_url=url)
            assert not worker.ready
            assert worker.checks["broker"]["status"] == "down"
            assert "broker" in str(worker.detail)
            checks = health.required_checks(resources, 0.5, url)
            assert set(checks) == {"broker"}
            assert health.required_checks(resources, 0.5, None) == {}
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)
