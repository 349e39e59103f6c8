"""Distributed rate limiting against real Redis: budgets, headers, keys, fallback, recovery."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis import Redis as SyncRedis

from storefront.app import create_app
from storefront.settings import Settings
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import Api, ProductInFactory
from tests.support.paths import V1
from tests.support.problems import assert_problem
from tests.support.servers import OwnRedis

GENEROUS = {"auth_rate": "1000/minute", "auth_account_rate": "1000/minute"}


def build(database_url: str, *, enabled: bool = True, **settings: Any) -> FastAPI:
    protection = {**GENEROUS, **settings.pop("protection", {})}
    return create_app(
        make_settings(database_url, rate_limit_enabled=enabled, protection=protection, **settings)
    )


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        try:
            yield app
        finally:
            await _empty_tables(app.state.resources)


def client_for(app: FastAPI, address: str = "127.0.0.1") -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url="http://testserver")


def missing_shop() -> str:
    return f"{V1}/shops/{uuid.uuid4()}"


def remaining(r: httpx2.Response, policy: str) -> int:
    match = re.search(rf'"{re.escape(policy)}";r=(\d+);t=(\d+)', r.headers["RateLimit"])
    assert match, r.headers.get("RateLimit")
    return int(match.group(1))


async def test_anonymous_budget_headers_refusal_and_recovery(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"anonymous_rate": "3/2 seconds"},
    )
    async with serving(app), client_for(app) as client:
        for left in (2, 1, 0):
            r = await client.get(missing_shop())
            assert r.status_code == 404
            assert r.headers["RateLimit-Policy"] == '"anonymous";q=3;w=2'
            assert remaining(r, "anonymous") == left
            t = int(r.headers["RateLimit"].rsplit("t=", 1)[1])
            # seconds round up and the window runs on Redis's clock: allow one more
            assert 0 <= t <= 3

        refused = await client.get(missing_shop(), headers={"X-Request-ID": "rate-limited-1"})
        body = assert_problem(refused, 429, slug="too-many-requests")
        assert "anonymous" in body["detail"]
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 3
        assert refused.headers["RateLimit-Policy"] == '"anonymous";q=3;w=2'
        assert remaining(refused, "anonymous") == 0
        # refusals carry the baseline headers like any other response
        assert refused.headers["X-Request-ID"] == "rate-limited-1"
        assert refused.headers["X-Content-Type-Options"] == "nosniff"
        assert (
            refused.headers["Content-Security-Policy"]
            == "default-src 'none'; frame-ancestors 'none'"
        )

        # the counters are in the shared Redis, under this deployment's prefix
        keys = SyncRedis.from_url(redis_url).keys(f"{redis_prefix}ratelimit*")
        assert keys

        await asyncio.sleep(retry_after + 0.2)
        again = await client.get(missing_shop())
        assert again.status_code == 404, again.text

        # probes and docs are never limited
        for _ in range(5):
            live = await client.get("/livez")
            assert live.status_code == 200
            assert "RateLimit" not in live.headers


async def test_signed_in_users_have_their_own_budget(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"anonymous_rate": "3/minute", "user_rate": "5/minute"},
    )
    async with serving(app), client_for(app) as client:
        alice = await Api(client).user()
        bob = await Api(client).user()
        for left in range(4, -1, -1):
            r = await client.get(f"{V1}/users/me", headers=alice.auth)
            assert r.status_code == 200
            assert r.headers["RateLimit-Policy"] == '"user";q=5;w=60'
            assert remaining(r, "user") == left
        assert_problem(await client.get(f"{V1}/users/me", headers=alice.auth), 429)
        # another user on the same address is untouched, and so is the anonymous budget
        assert (await client.get(f"{V1}/users/me", headers=bob.auth)).status_code == 200
        anonymous = await client.get(missing_shop())
        assert anonymous.status_code == 404
        assert remaining(anonymous, "anonymous") == 2
        # a token that does not verify is anonymous: it cannot mint fresh budgets
        forged = {"Authorization": "Bearer not-a-token"}
        r = await client.get(missing_shop(), headers=forged)
        assert remaining(r, "anonymous") == 1
        r = await client.get(missing_shop(), headers={"Authorization": "Bearer other-garbage"})
        assert remaining(r, "anonymous") == 0
        assert_problem(await client.get(missing_shop(), headers=forged), 429)


async def test_sign_in_is_limited_per_address_and_per_account(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"auth_rate": "6/minute", "auth_account_rate": "2/minute"},
    )
    async with serving(app):
        first, second = client_for(app, "192.0.2.10"), client_for(app, "192.0.2.20")
        async with first, second:
            attempt = {"email": "victim@example.com", "password": "wrong-password-1"}
            for _ in range(2):
                r = await first.post(f"{V1}/auth/login", json=attempt)
                assert r.status_code == 401
                assert '"auth-account";q=2;w=60' in r.headers["RateLimit-Policy"]
            # the account's budget is spent for every address, whatever the letter case
            r = await second.post(
                f"{V1}/auth/login", json={**attempt, "email": "Victim@Example.com"}
            )
            body = assert_problem(r, 429)
            assert "auth-account" in body["detail"]
            # the OAuth2 form route shares the account budget
            form = await second.post(
                f"{V1}/auth/token", data={"username": "victim@example.com", "password": "x"}
            )
            assert_problem(form, 429)

            # per address: other accounts from the first address until its 6 are spent
            for n in range(4):
                r = await first.post(
                    f"{V1}/auth/login", json={"email": f"u{n}@example.com", "password": "p"}
                )
                assert r.status_code in (401, 422), r.text
            r = await first.post(
                f"{V1}/auth/register",
                json={
                    "email": "new@example.com",
                    "password": "a-long-password-1",
                    "display_name": "N",
                },
            )
            body = assert_problem(r, 429)
            assert '"auth"' in r.headers["RateLimit-Policy"]
            # refused means nothing happened: the account was not created
            r = await second.post(
                f"{V1}/auth/login",
                json={"email": "new@example.com", "password": "a-long-password-1"},
            )
            assert r.status_code == 401


async def test_expensive_routes_have_their_own_tighter_budget(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"expensive_rate": "1/minute", "user_rate": "100/minute"},
    )
    async with serving(app), client_for(app) as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        bulk = f"{V1}/shops/{shop['id']}/products/bulk"
        items = [ProductInFactory.build().model_dump() for _ in range(2)]
        r = await client.post(bulk, json={"items": items}, headers=owner.auth)
        assert r.status_code == 200, r.text
        assert r.headers["RateLimit-Policy"] == '"expensive";q=1;w=60'
        more = [ProductInFactory.build().model_dump() for _ in range(2)]
        refused = await client.post(bulk, json={"items": more}, headers=owner.auth)
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
        # nothing from the refused request was written
        listing = await client.get(f"{V1}/shops/{shop['id']}/products", params={"limit": 100})
        assert len(listing.json()["items"]) == 2
        # ordinary routes still run on the user budget
        ok = await client.get(f"{V1}/users/me", headers=owner.auth)
        assert ok.status_code == 200
        assert ok.headers["RateLimit-Policy"] == '"user";q=100;w=60'
        # a streamed order export is expensive too; the JSON page is not
        orders = f"{V1}/shops/{shop['id']}/orders"
        page = await client.get(orders, headers=owner.auth)
        assert page.headers["RateLimit-Policy"] == '"user";q=100;w=60'
        export = await client.get(orders, headers={**owner.auth, "Accept": "application/x-ndjson"})
        assert_problem(export, 429)


async def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(
    sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        trusted_proxies=["10.0.0.0/8"],
        protection={"anonymous_rate": "1/minute"},
    )
    async with serving(app):
        proxy, direct = client_for(app, "10.1.2.3"), client_for(app, "198.51.100.7")
        async with proxy, direct:
            # through the trusted proxy: each forwarded client has its own budget
            for client_ip in ("203.0.113.5", "203.0.113.6"):
                r = await proxy.get(missing_shop(), headers={"X-Forwarded-For": client_ip})
                assert r.status_code == 404
            r = await proxy.get(missing_shop(), headers={"X-Forwarded-For": "203.0.113.5"})
            assert_problem(r, 429)

            # from an untrusted peer the header is ignored: spoofing buys no new budget
            r = await direct.get(missing_shop(), headers={"X-Forwarded-For": "203.0.113.77"})
            assert r.status_code == 404
            r = await direct.get(missing_shop(), headers={"X-Forwarded-For": "203.0.113.78"})
            assert_problem(r, 429)


async def test_switched_off_means_no_budgets(sqlite_url: str, redis_url: str) -> None:
    app = build(sqlite_url, enabled=False, protection={"anonymous_rate": "1/minute"})
    async with serving(app), client_for(app) as client:
        for _ in range(5):
            r = await client.get(missing_shop())
            assert r.status_code == 404
            assert "RateLimit" not in r.headers


def test_rate_limiting_is_on_by_default(sqlite_url: str) -> None:
    assert Settings.model_fields["rate_limit_enabled"].default is True
    for environment in ("development", "test"):
        assert make_settings(sqlite_url, environment=environment).rate_limit_enabled is True


def test_a_malformed_policy_is_refused_at_start(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="anonymous_rate"):
        make_settings(sqlite_url, protection={"anonymous_rate": "lots per minute"})


# --- Redis dropped mid-run ------------------------------------------------------------------


async def test_redis_dropped_mid_run_falls_back_then_recovers(
    sqlite_url: str, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    app = build(
        sqlite_url,
        redis_url=own_redis.url,
        protection={
            "anonymous_rate": "3/minute",
            "redis_retry_seconds": 0.2,
            # the production default, on the shared Redis and in the fallback
            "rate_limit_strategy": "sliding-window-counter",
        },
    )
    caplog.set_level(logging.WARNING, logger="storefront.ratelimit")
    async with serving(app), client_for(app) as client:
        r = await client.get(missing_shop())
        assert remaining(r, "anonymous") == 2
        health = (await client.get("/healthz")).json()["components"]
        assert health["rate_limiter"] == {
            "status": "up",
            "backend": "redis",
            "strategy": "sliding-window-counter",
            "scope": "shared",
        }

        own_redis.stop()  # Redis goes away between two requests

        r = await client.get(missing_shop())
        assert r.status_code == 404, r.text  # answered, still limited, never a 500
        assert remaining(r, "anonymous") == 2  # a fresh per-process budget
        assert "falling back to a per-process in-memory limiter" in caplog.text
        health = await client.get("/healthz")
        assert health.status_code == 503
        limiter = health.json()["components"]["rate_limiter"]
        assert limiter["status"] == "degraded"
        assert limiter["backend"] == "memory"
        assert limiter["fallbacks"] == 1
        # the in-memory stand-in still enforces the policy
        for _ in range(2):
            await client.get(missing_shop())
        assert_problem(await client.get(missing_shop()), 429)

        own_redis.start()  # Redis returns (empty): the limiter finds it by itself
        deadline = time.monotonic() + 10
        while app.state.resources.rate_limiter.backend != "redis":
            assert time.monotonic() < deadline, "the limiter never went back to Redis"
            await client.get(missing_shop())
            await asyncio.sleep(0.1)
        assert "back on the shared limiter" in caplog.text
        r = await client.get(missing_shop())
        assert r.status_code == 404
        assert remaining(r, "anonymous") == 2  # counted in the (restarted, empty) Redis
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["components"]["rate_limiter"]["backend"] == "redis"


async def test_connections_killed_by_redis_do_not_break_limiting(
    sqlite_url: str, own_redis: OwnRedis, redis_prefix: str
) -> None:
    """CLIENT KILL drops every pooled connection mid-run: the next request still works.
    On a Redis of the test's own: on the shared one, the kill also cut every test running
    beside it (a job worker of another test died of it)."""
    redis_url = own_redis.url
    app = build(
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        protection={"anonymous_rate": "5/minute", "redis_retry_seconds": 0.2},
    )
    async with serving(app), client_for(app) as client:
        assert remaining(await client.get(missing_shop()), "anonymous") == 4
        admin = SyncRedis.from_url(redis_url)
        admin.client_kill_filter(_type="normal", skipme=True)
        deadline = time.monotonic() + 10
        while True:
            r = await client.get(missing_shop())
            assert r.status_code in (404, 429), r.text
            if app.state.resources.rate_limiter.backend == "redis":
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        # back on the shared counters: the budget spent before the kill is still spent
        r = await client.get(missing_shop())
        assert remaining(r, "anonymous") <= 3


async def test_a_refusal_is_counted_for_the_rate_limit_alert(sqlite_url: str) -> None:
    """storefront_rate_limit_refusals_total feeds the RateLimitRefusals alert and the
    dashboard; it was declared and never incremented by a real refusal."""
    from prometheus_client import REGISTRY

    def refusals() -> float:
        value = REGISTRY.get_sample_value(
            "storefront_rate_limit_refusals_total", {"limiter": "anonymous"}
        )
        return value or 0.0

    app = build(sqlite_url, protection={"anonymous_rate": "2/minute"})
    async with serving(app), client_for(app, "192.0.2.77") as client:
        before = refusals()
        for _ in range(2):
            assert (await client.get(missing_shop())).status_code == 404
        assert_problem(await client.get(missing_shop()), 429)
        assert_problem(await client.get(missing_shop()), 429)
        assert refusals() == before + 2
