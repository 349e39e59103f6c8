"""CORS configured: requests without ``Origin`` pass untouched, allowed
origins get CORS headers, foreign origins get none, preflights answer as before.

Starlette (1.10+) calls ``simple_response`` for every request, with or without ``Origin``;
the strict middleware read ``request_headers["origin"]`` and every probe, scrape and
server-to-server call answered 500, so a CORS-enabled deployment never became ready.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx2
import pytest
from fastapi import FastAPI

from storefront.app import create_app
from tests.conftest import CORS_TEST_ORIGINS, make_settings
from tests.support.factories import Api
from tests.support.paths import V1
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import client_for, serving

ORIGIN = "https://app.example"
FOREIGN = "https://evil.example"


@pytest.fixture
async def cors_app(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, cors_origins=[ORIGIN, "https://b.example"]))
    async with serving(app):
        yield app


@pytest.fixture
async def cors_client(cors_app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(cors_app) as client:
        yield client


def cors_headers(r: httpx2.Response) -> list[str]:
    return [h for h in r.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/livez", 200), ("/readyz", 200), ("/healthz", 200), ("/metrics", 200), ("/docs", 200)],
)
async def test_operational_paths_without_origin_answer_normally(
    cors_client: httpx2.AsyncClient, path: str, status: int
) -> None:
    r = await cors_client.get(path)
    assert r.status_code == status, r.text
    assert cors_headers(r) == []


async def test_openapi_without_origin(cors_client: httpx2.AsyncClient) -> None:
    r = await cors_client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json()["info"]["title"] == "Storefront API"
    assert cors_headers(r) == []


async def test_api_calls_without_origin_answer_normally(
    cors_client: httpx2.AsyncClient,
) -> None:
    api = Api(cors_client)
    user = await api.user()
    me = await cors_client.get(f"{V1}/users/me", headers=user.auth)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == user.email
    assert cors_headers(me) == []
    shop = await api.shop(user)
    assert shop["id"]
    missing = await cors_client.get(f"{V1}/shops/{uuid.uuid4()}")
    assert_problem(missing, 404)
    assert cors_headers(missing) == []


async def test_allowed_origin_gets_cors_headers(cors_client: httpx2.AsyncClient) -> None:
    r = await cors_client.get("/livez", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    other = await cors_client.get("/livez", headers={"Origin": "https://b.example"})
    assert other.headers["Access-Control-Allow-Origin"] == "https://b.example"


async def test_foreign_origin_gets_no_cors_header(cors_client: httpx2.AsyncClient) -> None:
    for origin in (FOREIGN, "null", f"{ORIGIN}.evil.example", ORIGIN.upper()):
        r = await cors_client.get(f"{V1}/shops/{uuid.uuid4()}", headers={"Origin": origin})
        assert r.status_code == 404
        assert cors_headers(r) == [], origin
        assert "Origin" in r.headers["Vary"]


async def test_preflights_allowed_and_refused(cors_client: httpx2.AsyncClient) -> None:
    allowed = await cors_client.options(
        f"{V1}/auth/login",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = await cors_client.options(
        f"{V1}/auth/login",
        headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/cors-refused"
    assert cors_headers(refused) == []
    # an OPTIONS without Origin is no preflight: the router answers it (405), no 500
    bare = await cors_client.options(f"{V1}/auth/login")
    assert bare.status_code == 405
    assert cors_headers(bare) == []


async def test_the_postgres_variant_of_every_api_test_runs_with_cors_configured(
    backend: str, client: httpx2.AsyncClient
) -> None:
    """The harness promise (tests/conftest.py): the shared ``client`` runs with an allow-list
    on PostgreSQL, so every API test there goes through the CORS middleware."""
    r = await client.get("/livez", headers={"Origin": CORS_TEST_ORIGINS[0]})
    assert r.status_code == 200
    if backend == "postgres":
        assert r.headers["Access-Control-Allow-Origin"] == CORS_TEST_ORIGINS[0]
    else:
        assert "access-control-allow-origin" not in r.headers
