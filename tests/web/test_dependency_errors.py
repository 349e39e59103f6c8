"""A dependency that is away answers 503 with Retry-After, not 500
(decision 0110): here, a database pool with no free connection (PostgreSQL); and a Redis
outage is logged once when it starts and once when it ends, not once a second."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from storefront.app import create_app
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1, Api, shop_with_staff
from tests.support.servers import OwnRedis


@pytest.mark.postgres
async def test_an_exhausted_pool_answers_503_with_retry_after(postgres_url: str) -> None:
    settings = make_settings(
        postgres_url,
        database={"pool_size": 1, "max_overflow": 0, "pool_timeout_seconds": 0.3},
        observability={"readiness_interval_seconds": 0},
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"email": "nobody@example.com", "password": "not-the-password-at-all"}
                async with app.state.resources.engine.connect():  # the pool's only connection
                    r = await client.post(f"{V1}/auth/login", json=body)
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                assert r.headers["x-request-id"] == r.json()["request_id"]
                assert "pool" not in r.text  # names the dependency, not internals
                # the connection is back: answered by the database again
                assert (await client.post(f"{V1}/auth/login", json=body)).status_code == 401
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)


async def test_a_redis_outage_is_logged_once_and_its_end_once(
    sqlite_url: str, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        sqlite_url,
        redis_url=own_redis.url,
        redis_prefix=f"sf-{uuid.uuid4().hex[:8]}:",
        observability={"readiness_interval_seconds": 0.5},
    )
    app = create_app(settings)
    caplog.set_level(logging.INFO)

    def said(text: str) -> int:
        return sum(text in record.getMessage() for record in caplog.records)

    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client)
                _owner, staff, shop = await shop_with_staff(api)
                product = await api.product(staff, shop)
                url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
                assert (await client.get(url)).status_code == 200

                own_redis.stop()
                for _ in range(20):  # 4 s of cached reads: each goes to the database instead
                    assert (await client.get(url)).status_code == 200
                    await asyncio.sleep(0.2)
                # before: "cache: Redis unavailable" about once a second
                assert said("cache: Redis unavailable") == 1
                assert said("redis unavailable") == 1
                assert said("redis available again") == 0

                own_redis.start()
                deadline = time.monotonic() + 20
                while not said("redis available again"):
                    assert time.monotonic() < deadline, "the end of the outage was not logged"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                assert (await client.get(url)).status_code == 200
                assert said("redis available again") == 1
                assert said("cache: Redis unavailable") == 1
        finally:  # the shared database: leave no rows (signing keys, users)
            await _empty_tables(app.state.resources)


@pytest.mark.postgres
async def test_a_row_locked_past_the_statement_timeout_is_503_not_500(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Concurrent orders on one product queue on its row; one that waits past
    statement_timeout was a 500 with a traceback (seen in the availability drills under
    load). It is the database being busy, not a bug and not an outage: 503 with Retry-After
    on REST, ``unavailable`` on GraphQL, nothing changed, and the database not marked away."""
    from storefront.infra.availability import dependency
    from tests.graphql.support import codes, gql

    setup = create_app(make_settings(postgres_url))
    # the same database with a short statement timeout: only the requests under test use it
    busy = create_app(make_settings(postgres_url, database={"statement_timeout_ms": 300}))
    async with (
        LifespanManager(setup, startup_timeout=30, shutdown_timeout=30),
        LifespanManager(busy, startup_timeout=30, shutdown_timeout=30),
    ):
        try:
            transport = httpx2.ASGITransport(app=setup, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client, setup.state.resources)
                _owner, staff, shop = await shop_with_staff(api)
                product = await api.product(staff, shop, name="Hot item", stock=5)
            url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
            transport = httpx2.ASGITransport(app=busy, raise_app_exceptions=False)
            async with (
                httpx2.AsyncClient(transport=transport, base_url="http://t") as client,
                setup.state.resources.engine.begin() as holder,
            ):
                # another writer holds the product's row for longer than the timeout
                await holder.execute(
                    text("SELECT id FROM products WHERE id = :id FOR UPDATE"),
                    {"id": uuid.UUID(product["id"])},
                )
                caplog.set_level(logging.WARNING, logger="storefront.errors")
                r = await client.patch(
                    url, json={"stock": 1}, headers={**staff.auth, "If-Match": "*"}
                )
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                update = """mutation($shop: UUID!, $id: UUID!) {
                  updateProduct(shopId: $shop, id: $id, version: 1, input: {stock: 2}) {
                    version } }"""
                body = await gql(
                    client, update, {"shop": shop["id"], "id": product["id"]}, user=staff
                )
                assert codes(body) == ["unavailable"]
                assert body["errors"][0]["extensions"]["retry_after"] == 5
            assert "Traceback" not in caplog.text
            assert "database busy" in caplog.text
            assert dependency("database").is_up
            transport = httpx2.ASGITransport(app=setup, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                after = (await client.get(url)).json()
            assert (after["stock"], after["version"]) == (5, product["version"])
        finally:
            await _empty_tables(setup.state.resources)
