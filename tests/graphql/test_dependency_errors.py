"""A dependency that is away answers GraphQL operations as REST (decision 0110): the error
code ``unavailable`` (status 503, ``retry_after``), no traceback in the log and nothing
sent to Sentry. GraphQL answered ``internal-error`` and logged a traceback per request while
the database was unmigrated or its pool exhausted (at the GraphQL edge)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from storefront.app import create_app
from storefront.infra.availability import dependency
from tests.conftest import _empty_tables, make_settings
from tests.graphql.support import gql

SHOP = "query Shop($id: UUID!) { shop(id: $id) { id name } }"


def _client(app: FastAPI) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url="http://t")


def _assert_unavailable(body: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "unavailable", "status": 503, "retry_after": 5}
    assert error["message"] == (
        "A service this request needs (database) is unavailable; retry later."
    )
    assert not [r for r in caplog.records if r.name == "storefront.errors"], caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.postgres
async def test_an_exhausted_pool_is_unavailable_not_an_internal_error(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        postgres_url,
        database={"pool_size": 1, "max_overflow": 0, "pool_timeout_seconds": 0.3},
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            async with _client(app) as client:
                variables = {"id": str(uuid.uuid4())}
                async with app.state.resources.engine.connect():  # the pool's only connection
                    body = await gql(client, SHOP, variables)
                _assert_unavailable(body, caplog)
                # the connection is back: answered by the database again (no such shop)
                assert (await gql(client, SHOP, variables))["data"] == {"shop": None}
        finally:  # the shared database: leave no rows (signing keys)
            await _empty_tables(app.state.resources)
            dependency("database").up()


async def test_an_unmigrated_database_is_unavailable_not_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"  # never migrated
    settings = make_settings(url, observability={"readiness_interval_seconds": 0.1})
    app = create_app(settings)
    try:
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
            for _ in range(300):  # the process's readiness monitor has seen the schema
                if not dependency("database").is_up:
                    break
                await asyncio.sleep(0.05)
            assert not dependency("database").is_up
            caplog.clear()
            with caplog.at_level(logging.INFO):
                async with _client(app) as client:
                    body = await gql(client, SHOP, {"id": str(uuid.uuid4())})
            _assert_unavailable(body, caplog)
    finally:
        dependency("database").up()
