"""The response cache in full mode (L1 + Redis L2), two app instances sharing one database and
one Redis namespace, on SQLite and PostgreSQL: L2 hits across instances, invalidation seen
by the other instance, one computation for concurrent misses across instances (stampede),
and Redis down (read-through, counted)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from asgi_lifespan import LifespanManager
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storefront.app import create_app
from storefront.catalog.service import CatalogService
from storefront.kit.db import session_scope
from storefront.resources import Resources
from tests.cache.test_response_cache import eventually
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1, Api, shop_with_staff
from tests.support.servers import OwnRedis


@asynccontextmanager
async def instance(
    database_url: str, redis_url: str, redis_prefix: str, **cache: Any
) -> AsyncIterator[tuple[Resources, Api]]:
    settings = make_settings(
        database_url, redis_url=redis_url, redis_prefix=redis_prefix, cache=cache
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            yield resources, Api(client)


@asynccontextmanager
async def two_instances(
    database_url: str, redis_url: str, redis_prefix: str, **cache: Any
) -> AsyncIterator[tuple[tuple[Resources, Api], tuple[Resources, Api]]]:
    async with (
        instance(database_url, redis_url, redis_prefix, **cache) as a,
        instance(database_url, redis_url, redis_prefix, **cache) as b,
    ):
        try:
            yield a, b
        finally:
            await _empty_tables(a[0])


async def test_cache_uses_the_process_redis_pool(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """One Redis pool per process: the cache adds no client (and so no connections)."""
    async with instance(database_url, redis_url, redis_prefix) as (resources, _api):
        assert resources.redis is not None
        assert resources.cache.redis is resources.redis


def url_of(shop: dict[str, Any], product: dict[str, Any]) -> str:
    return f"{V1}/shops/{shop['id']}/products/{product['id']}"


async def test_second_instance_hits_l2_and_sees_every_write(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with two_instances(database_url, redis_url, redis_prefix) as ((_ra, a), (rb, b)):
        _owner, staff, shop = await shop_with_staff(a)
        product = await a.product(staff, shop, stock=10)
        url = url_of(shop, product)
        listing = f"{V1}/shops/{shop['id']}/products"

        filled = await a.client.get(url)
        assert filled.headers["x-cache"] == "miss"
        from_l2 = await b.client.get(url)
        assert from_l2.headers["x-cache"] == "hit-l2"
        assert from_l2.content == filled.content
        assert from_l2.headers["etag"] == filled.headers["etag"]
        assert (await b.client.get(url)).headers["x-cache"] == "hit-l1"
        await b.client.get(listing)

        for n in range(5):  # every acknowledged write is visible on the other instance
            etag = (await a.client.get(url)).headers["etag"]
            r = await a.client.patch(
                url, json={"name": f"name-{n}"}, headers={**staff.auth, "If-Match": etag}
            )
            assert r.status_code == 200, r.text
            seen = await b.client.get(url)
            assert seen.json()["name"] == f"name-{n}", seen.headers["x-cache"]
            assert seen.headers["etag"] == r.headers["etag"]
            assert (await b.client.get(listing)).json()["items"][0]["name"] == f"name-{n}"

        customer = await a.user()
        await a.order(customer, shop, (product, 4))
        assert (await b.client.get(url)).json()["stock"] == 6
        assert (await b.client.get(listing)).json()["items"][0]["stock"] == 6
        assert rb.cache.stats.hits_l2 >= 1


def _count_product_selects(engine: AsyncEngine, seen: list[str]) -> Any:
    def on_execute(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "FROM products" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    return on_execute


async def test_concurrent_misses_on_two_instances_compute_once(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Stampede: 10 concurrent misses on each of two instances: one SELECT in all."""
    async with two_instances(database_url, redis_url, redis_prefix, fill_lock_ms=10_000) as (
        (ra, a),
        (rb, b),
    ):
        _owner, staff, shop = await shop_with_staff(a)
        product = await a.product(staff, shop)
        url = url_of(shop, product)
        seen: list[str] = []
        listeners = [(r.engine, _count_product_selects(r.engine, seen)) for r in (ra, rb)]
        try:
            async with ra.engine.connect() as blocker:
                if blocker.dialect.name == "postgresql":
                    await blocker.execute(text("LOCK TABLE products IN ACCESS EXCLUSIVE MODE"))
                else:
                    await blocker.execute(text("SELECT 1"))  # holds SQLite's write lock
                seen.clear()
                tasks = [
                    asyncio.create_task(api.client.get(url)) for api in (a, b) for _ in range(10)
                ]
                await eventually(
                    lambda: ra.cache._flights.shared >= 9 and rb.cache._flights.shared >= 9
                )
                await blocker.rollback()
            responses = await asyncio.gather(*tasks)
        finally:
            for engine, listener in listeners:
                event.remove(engine.sync_engine, "before_cursor_execute", listener)
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        assert len(seen) == 1, seen
        sources = sorted(r.headers["x-cache"] for r in responses)
        assert sources == ["coalesced"] * 18 + ["hit-l2", "miss"]


async def rename(resources: Resources, shop: dict[str, Any], product_id: str, name: str) -> None:
    """A committed write through the catalog service, in a request-like session scope
    (sign-in itself needs Redis, so writes during an outage are made this way)."""
    shop_id, pid = uuid.UUID(shop["id"]), uuid.UUID(product_id)
    async for session in session_scope(resources.sessionmaker):
        catalog = CatalogService(session, shop_id, resources.cache)
        current = await catalog.get(pid)
        await catalog.update(current, {"name": name}, expected_version=current.version)


async def test_redis_unreachable_reads_through_and_keeps_serving(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with (
        instance(database_url, redis_url, redis_prefix) as (writer_rt, writer),
        instance(database_url, "redis://127.0.0.1:1/0", redis_prefix) as (resources, api),
    ):
        try:
            _owner, staff, shop = await shop_with_staff(writer)
            product = await writer.product(staff, shop)
            url = url_of(shop, product)
            responses = [await api.client.get(url) for _ in range(3)]
            assert [r.status_code for r in responses] == [200, 200, 200]
            assert {r.headers["x-cache"] for r in responses} == {"bypass"}
            assert responses[0].json() == product
            etag = responses[0].headers["etag"]
            assert (await api.client.get(url, headers={"If-None-Match": etag})).status_code == 304

            # a write committed by the instance without Redis: acknowledged, invalidation owed
            await rename(resources, shop, product["id"], "still works")
            assert resources.cache.stats.invalidation_failures >= 1
            assert resources.cache._pending
            assert (await api.client.get(url)).json()["name"] == "still works"
            stats = resources.cache.stats
            assert stats.bypassed >= 5
            assert stats.redis_errors >= 1
        finally:
            await _empty_tables(writer_rt)


# --- a Redis of our own, stopped and started while the app runs ----------------------------
async def test_redis_outage_mid_run_then_recovery(database_url: str, own_redis: OwnRedis) -> None:
    """Redis stops: reads go to the database; it comes back (empty): caching resumes,
    and nothing stale is served at any point."""
    async with two_instances(database_url, own_redis.url, "sf:") as ((ra, a), (_rb, b)):
        _owner, staff, shop = await shop_with_staff(a)
        product = await a.product(staff, shop)
        url = url_of(shop, product)
        await a.client.get(url)
        assert (await b.client.get(url)).headers["x-cache"] == "hit-l2"

        own_redis.stop()
        down = await b.client.get(url)
        assert down.status_code == 200
        assert down.headers["x-cache"] == "bypass"
        await rename(ra, shop, product["id"], "during outage")
        assert (await b.client.get(url)).json()["name"] == "during outage"

        own_redis.start()
        # the writer's owed invalidation is retried
        await eventually(lambda: not ra.cache._pending)
        await asyncio.sleep(1.1)  # past the down back-off
        for api in (a, b, b):
            seen = await api.client.get(url)
            assert seen.json()["name"] == "during outage", seen.headers["x-cache"]
        assert (await b.client.get(url)).headers["x-cache"] == "hit-l1"


async def test_lost_invalidation_is_retried_before_stale_data_returns(
    database_url: str, own_redis: OwnRedis
) -> None:
    """Redis hangs (stopped, keeping its data) while a write commits: the write is still
    done, its invalidation is owed and retried; once Redis answers again the other
    instance sees the write, not the entry it cached before it."""
    async with two_instances(database_url, own_redis.url, "sf:") as ((ra, a), (_rb, b)):
        _owner, staff, shop = await shop_with_staff(a)
        product = await a.product(staff, shop)
        url = url_of(shop, product)
        await a.client.get(url)
        assert (await b.client.get(url)).headers["x-cache"] == "hit-l2"

        # hung until the write is done, however long that takes (a 1.5 s CLIENT PAUSE ran
        # out before the write on a stalled CI machine, and its invalidation went through)
        own_redis.freeze()
        try:
            await rename(ra, shop, product["id"], "after stall")
            assert ra.cache.stats.invalidation_failures >= 1
            assert ra.cache._pending  # owed, and this instance trusts no cached entry meanwhile
            assert (await a.client.get(url)).json()["name"] == "after stall"
        finally:
            own_redis.thaw()
        await eventually(lambda: not ra.cache._pending)
        seen = await b.client.get(url)
        assert seen.json()["name"] == "after stall", seen.headers["x-cache"]


async def test_a_failed_fill_releases_the_lock_for_other_instances(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """A 404 is not cached and must not make the next lookups wait out the fill lock
    (20 s here): they compute at once."""
    async with two_instances(database_url, redis_url, redis_prefix, fill_lock_ms=20_000) as (
        (_ra, a),
        (_rb, b),
    ):
        _owner, _staff, shop = await shop_with_staff(a)
        missing = f"{V1}/shops/{shop['id']}/products/0190a4c5-0000-7000-8000-000000000000"
        async with asyncio.timeout(10):
            for api in (a, b, a, b):
                r = await api.client.get(missing)
                assert r.status_code == 404
                assert r.headers["content-type"].startswith("application/problem+json")
