"""A database address that accepts connections and never answers (HAProxy while no primary is
up during a failover, a host gone without a reset) answers 503 with Retry-After within the
connect and pool timeouts, not after asyncpg's own 60 s connect timeout (decision 0195)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from storefront.app import create_app
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1
from tests.support.faults import Fault, FaultProxy

# generous: the bound under test is 1 s connect + 1 s pool; before the fix a request waited
# for asyncpg's 60 s (or the 30 s request timeout's 504)
WITHIN_SECONDS = 20


@pytest.mark.postgres
async def test_a_database_that_accepts_and_never_answers_is_a_prompt_503(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    async with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port)
        settings = make_settings(
            through.render_as_string(hide_password=False),
            database={
                "pool_size": 2,
                "max_overflow": 0,
                "pool_timeout_seconds": 1.0,
                "connect_timeout_seconds": 1.0,
            },
            observability={"readiness_interval_seconds": 0},
        )
        app = create_app(settings)
        body = {"email": "nobody@example.com", "password": "not-the-password-at-all"}
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
            try:
                transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx2.AsyncClient(
                    transport=transport, base_url="http://t", timeout=WITHIN_SECONDS + 10
                ) as client:
                    assert (await client.post(f"{V1}/auth/login", json=body)).status_code == 401
                    # the pooled connections are cut (HAProxy's shutdown-sessions) and every
                    # new one is accepted and never answered
                    await proxy.set(Fault.HANG)
                    accepted = proxy.accepted
                    for _ in range(3):
                        async with asyncio.timeout(WITHIN_SECONDS):
                            r = await client.post(f"{V1}/auth/login", json=body)
                        assert r.status_code == 503, r.text
                        assert r.headers["content-type"] == "application/problem+json"
                        assert r.headers["retry-after"] == "5"
                        assert r.json()["status"] == 503
                    # the 503s came from connects into the blackhole, not only from the cut
                    # connections: the timeout under test is the connect's
                    assert proxy.accepted > accepted
                    await proxy.set(Fault.NONE)
                    # healed: the next connection answers (a request may still meet one the
                    # cut left behind, a 503 that the client retries)
                    statuses = []
                    for _ in range(3):
                        async with asyncio.timeout(WITHIN_SECONDS):
                            r = await client.post(f"{V1}/auth/login", json=body)
                        statuses.append(r.status_code)
                        if r.status_code == 401:
                            break
                    assert statuses[-1] == 401, statuses
            finally:  # the shared database: leave no rows (signing keys, users)
                await proxy.set(Fault.NONE)
                await _empty_tables(app.state.resources)
