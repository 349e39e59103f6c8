"""/healthz in production (decision 0125): anonymous callers get the overall status and its
status code only; the per-component details (error types, latencies, revisions, the rate
limiter's state) need the metrics scrape token. Outside production nothing changes."""

from __future__ import annotations

import pytest

from tests.web.test_operational_endpoints import TOKEN, app_with, production
from tests.web.test_rate_limit import client_for

NOT_THE_TOKEN: tuple[dict[str, str], ...] = (
    {},
    {"Authorization": "Bearer wrong-token-wrong-token-wrong-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
)


@pytest.mark.parametrize("token", [TOKEN, None])
async def test_production_healthz_shows_anonymous_callers_only_the_status(
    database_url: str, token: str | None
) -> None:
    observability = {"metrics_token": token} if token else {}
    settings = production(database_url, observability=observability)
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        for headers in NOT_THE_TOKEN:
            r = await client.get("/healthz", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json() == {"status": "ok"}, (headers, r.text)
            assert r.headers["cache-control"] == "no-store"
        if token:
            full = await client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
            assert full.status_code == 200, full.text
            assert full.json()["components"]["db_primary"]["status"] == "up"
            assert "latency_ms" in full.json()["components"]["db_primary"]


async def test_production_healthz_says_degraded_without_naming_the_failure(
    database_url: str,
) -> None:
    # Redis configured but nothing listens: the limiter stands in for it in memory
    settings = production(
        database_url,
        observability={"metrics_token": TOKEN},
        redis_url="redis://127.0.0.1:1/0",
        rate_limit_enabled=True,
    )
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        await client.get("/api/v1/shops")  # the limiter meets the dead Redis and falls back
        r = await client.get("/healthz")
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "degraded"}
        assert "Error" not in r.text
        full = await client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert full.status_code == 503
        assert "components" in full.json()


async def test_outside_production_healthz_keeps_its_details(database_url: str) -> None:
    async with app_with(database_url) as app, client_for(app) as client:
        r = await client.get("/healthz")
        assert r.status_code == 200
        assert r.json()["components"]["db_primary"]["status"] == "up"


async def test_production_readyz_shows_anonymous_callers_no_checks(database_url: str) -> None:
    settings = production(database_url, observability={"metrics_token": TOKEN})
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready"}
        full = await client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert full.json()["checks"]["schema"]["revision"]


async def test_production_readyz_refuses_without_naming_the_error(database_url: str) -> None:
    settings = production(
        database_url, observability={"metrics_token": TOKEN}, redis_url="redis://127.0.0.1:1/0"
    )
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503, r.text
        assert "checks" not in r.json()
        assert "Error" not in r.text
        full = await client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert full.status_code == 503
        assert full.json()["checks"]["redis"]["status"] == "down"
