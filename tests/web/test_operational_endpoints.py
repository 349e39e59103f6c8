"""Operational endpoints in production: no anonymous business figures on
the API port, docs behind a setting, probes and scrapes rate-limited per process.

Production serves metrics on their own port (tests/web/test_serve_edge.py) and, on
the API port, only to a scraper that presents ``STOREFRONT_OBSERVABILITY__METRICS_TOKEN``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from storefront.app import create_app
from tests.conftest import make_settings
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import client_for, serving

GOOD_SECRET = "7c1f0e9a4b2d8c6e5f3a1b0d9e8c7f6a5b4c3d2e"
MASTER_KEY = "q3Jx9b1C4vZ0mT6yP2sW8kN5hL7dF1gA3eR0uI9oY2c="
BLIND_KEY = "Zm9yLXRlc3RzLW9ubHktYmxpbmQtaW5kZXgta2V5IS0="
TOKEN = "scrape-8c6e5f3a1b0d9e8c7f6a5b4c3d2e1f0a"
DOCS_PATHS = ("/docs", "/openapi.json", "/docs/oauth2-redirect", "/static/docs/swagger-ui.css")


def production(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Everything production requires (tests/settings/test_settings.py), plus ``overrides``."""
    observability = {"log_format": "console", **overrides.pop("observability", {})}
    return {
        "environment": "production",
        "deployment_name": "storefront-test",  # required in production
        "auth": {
            "jwt_secret": GOOD_SECRET,
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
            "argon2_parallelism": 1,
        },
        "privacy": {"master_keys": f"v1:{MASTER_KEY}", "blind_index_key": BLIND_KEY},
        "observability": observability,
        **overrides,
    }


@asynccontextmanager
async def app_with(database_url: str, **settings: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, **settings))
    async with serving(app):
        yield app


@pytest.fixture
async def production_app(database_url: str) -> AsyncIterator[FastAPI]:
    async with app_with(database_url, **production(database_url)) as app:
        yield app


async def test_production_serves_no_metrics_and_no_docs_on_the_api_port(
    production_app: FastAPI,
) -> None:
    async with client_for(production_app) as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = await client.get("/metrics")
        assert_problem(metrics, 404)
        assert "storefront_" not in metrics.text
        for path in DOCS_PATHS:
            r = await client.get(path)
            assert r.status_code == 404, (path, r.status_code)


async def test_production_metrics_on_the_api_port_need_the_scrape_token(
    database_url: str,
) -> None:
    settings = production(database_url, observability={"metrics_token": TOKEN})
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-wrong-token-wrong-token"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert_problem(refused, 401)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "storefront_" not in refused.text
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200, ok.text
        assert "storefront_http_requests_total" in ok.text


async def test_a_token_guards_metrics_in_every_environment(database_url: str) -> None:
    observability = {"metrics_token": TOKEN}
    async with (
        app_with(database_url, observability=observability) as app,
        client_for(app) as client,
    ):
        assert_problem(await client.get("/metrics"), 401)
        ok = await client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
        assert ok.status_code == 200


async def test_development_keeps_metrics_and_docs_on_the_api_port(
    client: httpx2.AsyncClient,
) -> None:
    assert (await client.get("/metrics")).status_code == 200
    for path in DOCS_PATHS:
        assert (await client.get(path)).status_code == 200, path


async def test_the_docs_setting_is_honoured_both_ways(database_url: str) -> None:
    async with app_with(database_url, docs_enabled=False) as app, client_for(app) as client:
        for path in DOCS_PATHS:
            r = await client.get(path)
            assert r.status_code == 404, path
    settings = production(database_url, docs_enabled=True)
    async with app_with(database_url, **settings) as app, client_for(app) as client:
        for path in DOCS_PATHS:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "Storefront API"


def test_production_refuses_metrics_on_the_api_port_without_a_token(sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match="STOREFRONT_OBSERVABILITY__METRICS_TOKEN"):
        make_settings(sqlite_url, **production(sqlite_url, observability={"metrics_port": 0}))
    # with a token it may (a scraper that can only reach the API port)
    settings = make_settings(
        sqlite_url,
        **production(sqlite_url, observability={"metrics_port": 0, "metrics_token": TOKEN}),
    )
    assert settings.api_metrics_port == 0
    assert make_settings(sqlite_url, **production(sqlite_url)).api_metrics_port == 9101
    assert make_settings(sqlite_url).api_metrics_port == 0
    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        make_settings(sqlite_url, observability={"metrics_token": "short"})


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operational_endpoints_are_rate_limited_per_address(
    database_url: str, path: str
) -> None:
    protection = {"operations_rate": "3/minute"}
    async with app_with(database_url, protection=protection) as app:
        async with client_for(app) as client:
            for left in (2, 1, 0):
                r = await client.get(path)
                assert r.status_code == 200, r.text
                assert f'"operations";r={left};' in r.headers["RateLimit"]
            refused = await client.get(path)
            assert_problem(refused, 429)
            assert int(refused.headers["Retry-After"]) >= 1
            # one budget for all of them, per address
            other = "/readyz" if path != "/readyz" else "/healthz"
            assert_problem(await client.get(other), 429)
            # liveness is never refused: a refused liveness probe restarts the process
            for _ in range(5):
                assert (await client.get("/livez")).status_code == 200
            # the API's own budgets are separate
            assert (
                await client.get("/api/v1/shops/00000000-0000-0000-0000-000000000000")
            ).status_code == 404
        async with client_for(app, address="10.9.8.7") as elsewhere:
            assert (await elsewhere.get(path)).status_code == 200
