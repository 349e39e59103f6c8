"""Security headers, CORS, input limits, load shedding, deadlines, statement timeouts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storefront.app import create_app
from storefront.web.middleware import API_CSP, DOCS_CSP
from tests.conftest import make_settings
from tests.support.factories import PASSWORD, Api, ProductInFactory
from tests.support.identity import count_users
from tests.support.paths import V1
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import client_for, serving

ORIGIN = "https://shop.example"


def build(database_url: str, **settings: Any) -> FastAPI:
    return create_app(make_settings(database_url, **settings))


# --- security headers -----------------------------------------------------------------------


async def test_api_responses_carry_the_owasp_headers(api: Api, client: httpx2.AsyncClient) -> None:
    user = await api.user()
    for r in (
        await client.get(f"{V1}/users/me", headers=user.auth),
        await client.get(f"{V1}/shops/{uuid.uuid4()}"),
        await client.get("/livez"),
    ):
        assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert r.headers["Content-Security-Policy"] == API_CSP
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "server" not in r.headers
        assert "x-powered-by" not in r.headers


async def test_docs_get_the_narrowest_csp_that_runs_them(client: httpx2.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert r.headers["Content-Security-Policy"] == DOCS_CSP
    assert "default-src 'none'" in DOCS_CSP
    assert "frame-ancestors 'none'" in DOCS_CSP
    assert "http" not in DOCS_CSP  # no remote origin is allowed anything


async def test_personal_and_token_responses_are_not_stored(
    api: Api, client: httpx2.AsyncClient
) -> None:
    user = await api.user()
    login = await client.post(f"{V1}/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.headers["Cache-Control"] == "no-store"
    me = await client.get(f"{V1}/users/me", headers=user.auth)
    assert me.headers["Cache-Control"] == "no-store"


# --- CORS -----------------------------------------------------------------------------------


@pytest.fixture
async def cors_app(sqlite_url: str) -> AsyncIterator[FastAPI]:
    app = build(sqlite_url, cors_origins=[ORIGIN])
    async with serving(app):
        yield app


async def test_cors_preflight_for_an_allowed_origin(cors_app: FastAPI) -> None:
    async with client_for(cors_app) as client:
        r = await client.options(
            f"{V1}/auth/login",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, idempotency-key",
            },
        )
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "access-control-allow-credentials" not in r.headers
    assert "RateLimit" not in r.headers  # preflights spend no budget


async def test_cors_simple_request_from_an_allowed_origin(cors_app: FastAPI) -> None:
    async with client_for(cors_app) as client:
        r = await client.get(f"{V1}/shops/{uuid.uuid4()}", headers={"Origin": ORIGIN})
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    exposed = r.headers["Access-Control-Expose-Headers"]
    for name in (
        "RateLimit",
        "RateLimit-Policy",
        "Retry-After",
        "X-Request-ID",
        "ETag",
        "Location",
        "Idempotent-Replayed",  # a browser tells a replayed order from a new one
    ):
        assert name in exposed


async def test_cors_other_origins_get_no_cors_headers(cors_app: FastAPI) -> None:
    evil = "https://evil.example"
    async with client_for(cors_app) as client:
        simple = await client.get(f"{V1}/shops/{uuid.uuid4()}", headers={"Origin": evil})
        preflight = await client.options(
            f"{V1}/auth/login",
            headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
        )
    assert simple.status_code == 404
    assert not [h for h in simple.headers if h.lower().startswith("access-control-")]
    assert preflight.status_code == 400
    assert preflight.headers["content-type"] == "application/problem+json"
    assert preflight.json()["type"] == "/problems/cors-refused"
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    assert preflight.headers["Vary"] == "Origin"


def test_wildcard_origin_with_credentials_refuses_to_start(sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match="list the origins explicitly"):
        make_settings(sqlite_url, cors_origins=["*"], protection={"cors_allow_credentials": True})
    # credentials with explicit origins are fine
    settings = make_settings(
        sqlite_url, cors_origins=[ORIGIN], protection={"cors_allow_credentials": True}
    )
    assert settings.protection.cors_allow_credentials


# --- input limits ---------------------------------------------------------------------------


async def test_declared_oversized_body_is_413_before_the_app_reads_it(sqlite_url: str) -> None:
    app = build(sqlite_url, protection={"max_body_bytes": 2048})
    async with serving(app), client_for(app) as client:
        body = b'{"email": "' + b"a" * 4096 + b'@example.com"}'
        r = await client.post(
            f"{V1}/auth/register", content=body, headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 413, slug="content-too-large")
        assert "2048-byte" in r.json()["detail"]
        assert await count_users(app.state.resources) == 0


async def test_streamed_oversized_body_is_cut_off_while_streaming(sqlite_url: str) -> None:
    app = build(sqlite_url, protection={"max_body_bytes": 4096})
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"email": "x@example.com", "display_name": "'
        for _ in range(1000):  # ~1 MB if it were all read
            sent += 1
            yield b"a" * 1024
        yield b'", "password": "a-long-password-1"}'

    async with serving(app), client_for(app) as client:
        r = await client.post(
            f"{V1}/auth/register",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in r.request.headers  # chunked: no size declared
        assert_problem(r, 413, slug="content-too-large")
        assert sent < 10, f"read {sent} chunks past a 4 KiB limit"
        assert await count_users(app.state.resources) == 0


async def test_bulk_route_has_a_larger_body_limit(sqlite_url: str) -> None:
    app = build(
        sqlite_url,
        protection={"max_body_bytes": 4096, "max_bulk_body_bytes": 1_000_000},
        rate_limit_enabled=False,
    )
    async with serving(app), client_for(app) as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        items = [ProductInFactory.build().model_dump() for _ in range(40)]
        r = await client.post(
            f"{V1}/shops/{shop['id']}/products/bulk", json={"items": items}, headers=owner.auth
        )
        assert len(r.request.content) > 4096
        assert r.status_code == 200, r.text


async def test_json_routes_refuse_other_media_types(
    client: httpx2.AsyncClient, resources: Any
) -> None:
    body = '{"email": "m@example.com", "password": "a-long-password-1", "display_name": "M"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = await client.post(
            f"{V1}/auth/register", content=body, headers={"Content-Type": content_type}
        )
        assert_problem(r, 415, slug="unsupported-media-type")
    untyped = await client.post(f"{V1}/auth/register", content=body.encode())
    assert_problem(untyped, 415)
    assert await count_users(resources) == 0
    # JSON with a charset parameter, and +json types, are JSON
    ok = await client.post(
        f"{V1}/auth/register",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 201, ok.text
    # the OAuth2 form route still takes its form
    form = await client.post(
        f"{V1}/auth/token", data={"username": "m@example.com", "password": "a-long-password-1"}
    )
    assert form.status_code == 200, form.text


async def test_deeply_nested_or_long_json_is_refused(
    client: httpx2.AsyncClient, resources: Any
) -> None:
    base = {"email": "d@example.com", "password": "a-long-password-1", "display_name": "D"}
    nested: Any = "x"
    for _ in range(40):
        nested = [nested]
    r = await client.post(f"{V1}/auth/register", json={**base, "extra": nested})
    body = assert_problem(r, 422, slug="json-too-complex")
    assert "deeper than 32" in body["detail"]
    r = await client.post(f"{V1}/auth/register", json={**base, "extra": list(range(10_001))})
    body = assert_problem(r, 422, slug="json-too-complex")
    assert "10001 items" in body["detail"]
    assert await count_users(resources) == 0


async def test_collection_and_string_bounds(api: Api, client: httpx2.AsyncClient) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    products = f"{V1}/shops/{shop['id']}/products"
    assert (await client.get(products, params={"limit": 100})).status_code == 200
    assert_problem(await client.get(products, params={"limit": 101}), 422)
    items = [ProductInFactory.build().model_dump() for _ in range(1001)]
    r = await client.post(f"{products}/bulk", json={"items": items}, headers=owner.auth)
    assert_problem(r, 422)
    long_name = ProductInFactory.build().model_dump() | {"name": "n" * 201}
    assert_problem(await client.post(products, json=long_name, headers=owner.auth), 422)
    long_display = await client.patch(
        f"{V1}/users/me", json={"display_name": "d" * 101}, headers=owner.auth
    )
    assert_problem(long_display, 422)
    listing = await client.get(products, params={"limit": 100})
    assert listing.json()["items"] == []  # nothing refused was written


# --- load shedding and deadlines ------------------------------------------------------------


async def test_past_the_in_flight_cap_requests_are_shed_fast(sqlite_url: str) -> None:
    app = build(
        sqlite_url,
        protection={"max_in_flight": 2, "shed_retry_after_seconds": 3},
        rate_limit_enabled=False,
    )
    release, both_in = asyncio.Event(), asyncio.Event()
    entered = 0

    async def slow() -> dict[str, str]:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_in.set()
        await release.wait()
        return {"status": "done"}

    app.add_api_route(f"{V1}/test-slow", slow)
    async with serving(app), client_for(app) as client:
        held = [asyncio.create_task(client.get(f"{V1}/test-slow")) for _ in range(2)]
        await asyncio.wait_for(both_in.wait(), 10)
        burst = await asyncio.gather(*(client.get(f"{V1}/test-slow") for _ in range(10)))
        # answered while the two held requests are still in flight: no queueing
        assert not release.is_set()
        assert entered == 2
        for r in burst:
            assert_problem(r, 503, slug="overloaded")
            assert r.headers["Retry-After"] == "3"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        # probes are exempt
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        release.set()
        for r in await asyncio.gather(*held):
            assert r.status_code == 200
        assert (await client.get(f"{V1}/test-slow")).status_code == 200


async def test_deadline_cancels_the_work_and_answers_504(sqlite_url: str) -> None:
    app = build(sqlite_url, protection={"request_timeout_seconds": 0.2})
    outcome: list[str] = []

    async def stuck() -> dict[str, str]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")
        return {"status": "done"}

    app.add_api_route(f"{V1}/test-stuck", stuck)
    async with serving(app), client_for(app) as client:
        r = await client.get(f"{V1}/test-stuck", headers={"X-Request-ID": "deadline-test-1"})
        body = assert_problem(r, 504, slug="timeout")
        assert "0.2 s" in body["detail"]
        assert r.headers["X-Request-ID"] == "deadline-test-1"
        assert outcome == ["cancelled"]
        # ordinary requests are unaffected
        assert (await client.get(f"{V1}/shops/{uuid.uuid4()}")).status_code == 404


async def test_deadline_rolls_back_a_write_in_progress(postgres_url: str) -> None:
    """Work cancelled by the deadline commits nothing (PostgreSQL, a real transaction)."""
    app = build(postgres_url, protection={"request_timeout_seconds": 0.3})
    table = f"deadline_probe_{uuid.uuid4().hex[:8]}"

    async def write_then_hang() -> dict[str, str]:
        async with app.state.resources.sessionmaker() as session, session.begin():
            await session.execute(text(f"INSERT INTO {table} VALUES (1)"))  # noqa: S608
            await session.execute(text("SELECT pg_sleep(5)"))
        return {"status": "done"}

    app.add_api_route(f"{V1}/test-write", write_then_hang, methods=["POST"])
    async with serving(app), client_for(app) as client:
        engine = app.state.resources.engine
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (n int)"))
        try:
            r = await client.post(f"{V1}/test-write")
            assert_problem(r, 504)
            async with engine.connect() as conn:
                rows = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
            assert rows == 0
        finally:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP TABLE {table}"))


async def test_postgres_statement_timeout_stops_a_runaway_query(postgres_url: str) -> None:
    app = build(postgres_url, database={"statement_timeout_ms": 200})
    async with LifespanManager(
        app, startup_timeout=30, shutdown_timeout=30
    ):  # writes nothing, so nothing to empty afterwards
        engine = app.state.resources.engine
        async with engine.connect() as conn:
            shown = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
            assert shown == "200ms"
            with pytest.raises(DBAPIError, match="statement timeout"):
                await conn.execute(text("SELECT pg_sleep(3)"))
