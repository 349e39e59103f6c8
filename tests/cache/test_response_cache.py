"""The response cache on the embedded default (L1 only, no Redis), on SQLite and PostgreSQL:
hits, ETag/304, invalidation by every kind of write, the setting that turns it off, and
request coalescing (identical concurrent uncached GETs share one query)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from storefront.app import create_app
from storefront.resources import Resources
from tests.conftest import QueryCounter, _empty_tables, make_settings
from tests.support.factories import V1, Api, ProductInFactory, shop_with_staff


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (state owned by the app under test) until it holds (20 s at most)."""
    async with asyncio.timeout(20):
        while not predicate():  # noqa: ASYNC110 - polling another component's state
            await asyncio.sleep(0.01)


def product_url(shop: dict[str, Any], product: dict[str, Any]) -> str:
    return f"{V1}/shops/{shop['id']}/products/{product['id']}"


def products_url(shop: dict[str, Any]) -> str:
    return f"{V1}/shops/{shop['id']}/products"


async def test_product_hit_serves_same_bytes_and_etag_and_304(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = product_url(shop, product)

    first = await api.client.get(url)
    second = await api.client.get(url)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "hit-l1"
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    assert first.headers["etag"].startswith('"')  # strong
    assert first.headers["cache-control"] == second.headers["cache-control"] == "no-cache"
    assert second.json() == product

    not_modified = await api.client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == first.headers["etag"]
    assert not_modified.headers["cache-control"] == "no-cache"
    other = await api.client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert resources.cache.stats.hits_l1 >= 3


async def test_writes_invalidate_product_and_listing(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10)
    url = product_url(shop, product)
    listing = (await api.client.get(products_url(shop))).json()
    assert [p["id"] for p in listing["items"]] == [product["id"]]
    etag = (await api.client.get(url)).headers["etag"]
    assert (await api.client.get(url)).headers["x-cache"] == "hit-l1"

    # PATCH: the next read is the new representation, never the cached one
    r = await api.client.patch(
        url, json={"name": "Renamed"}, headers={**staff.auth, "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    fresh = await api.client.get(url)
    assert fresh.headers["x-cache"] == "miss"
    assert fresh.json()["name"] == "Renamed"
    assert fresh.headers["etag"] == r.headers["etag"] != etag
    assert (await api.client.get(url, headers={"If-None-Match": etag})).status_code == 200
    assert (await api.client.get(products_url(shop))).json()["items"][0]["name"] == "Renamed"

    # create: the listing shows the new product at once
    second = await api.product(staff, shop)
    ids = [p["id"] for p in (await api.client.get(products_url(shop))).json()["items"]]
    assert ids == [product["id"], second["id"]]

    # bulk upsert: updates an existing sku and adds one
    bulk = [
        {**ProductInFactory.build().model_dump(), "sku": product["sku"], "stock": 3},
        ProductInFactory.build().model_dump(),
    ]
    r = await api.client.post(
        f"{products_url(shop)}/bulk", json={"items": bulk}, headers=staff.auth
    )
    assert r.json() == {"created": 1, "updated": 1}
    assert (await api.client.get(url)).json()["stock"] == 3
    assert len((await api.client.get(products_url(shop))).json()["items"]) == 3

    # an order takes stock; cancelling returns it: both visible on the next read
    customer = await api.user()
    order = await api.order(customer, shop, (product, 2))
    assert (await api.client.get(url)).json()["stock"] == 1
    listed = (await api.client.get(products_url(shop))).json()["items"]
    assert next(p for p in listed if p["id"] == product["id"])["stock"] == 1
    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders/{order['id']}/cancel", headers=customer.auth
    )
    assert r.status_code == 200, r.text
    assert (await api.client.get(url)).json()["stock"] == 3

    # archive: gone from the product URL and from listings
    r = await api.client.delete(url, headers=staff.auth)
    assert r.status_code == 204
    assert (await api.client.get(url)).status_code == 404
    ids = [p["id"] for p in (await api.client.get(products_url(shop))).json()["items"]]
    assert product["id"] not in ids


async def test_failed_writes_invalidate_nothing(api: Api, resources: Resources) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=5)
    url = product_url(shop, product)
    await api.client.get(url)
    before = resources.cache.stats.invalidations

    stale = await api.client.patch(
        url, json={"name": "x"}, headers={**staff.auth, "If-Match": '"stale"'}
    )
    assert stale.status_code == 412
    dup = await api.client.post(
        products_url(shop),
        json=ProductInFactory.build(sku=product["sku"]).model_dump(),
        headers=staff.auth,
    )
    assert dup.status_code == 409
    customer = await api.user()
    short = await api.place_order(customer, shop, (product, 6))
    assert short.status_code == 409

    assert resources.cache.stats.invalidations == before  # rolled back: nothing to invalidate
    assert (await api.client.get(url)).headers["x-cache"] == "hit-l1"


async def test_listing_pages_link_and_304(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop)
    first = await api.client.get(products_url(shop), params={"limit": 2})
    again = await api.client.get(products_url(shop), params={"limit": 2})
    assert again.headers["x-cache"] == "hit-l1"
    assert first.content == again.content
    assert first.headers["link"] == again.headers["link"]
    assert 'rel="next"' in again.headers["link"]
    cursor = again.json()["next_cursor"]
    assert f"cursor={cursor}" in again.headers["link"]
    last = await api.client.get(products_url(shop), params={"limit": 2, "cursor": cursor})
    assert len(last.json()["items"]) == 1
    assert "link" not in last.headers
    r = await api.client.get(
        products_url(shop), params={"limit": 2}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert r.status_code == 304
    # different parameters are different entries
    other = await api.client.get(products_url(shop), params={"limit": 3})
    assert other.headers["x-cache"] == "miss"
    assert len(other.json()["items"]) == 3


async def test_shop_is_cached_with_etag(api: Api) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    url = f"{V1}/shops/{shop['id']}"
    first = await api.client.get(url)
    second = await api.client.get(url)
    assert first.json() == second.json() == shop
    assert second.headers["x-cache"] == "hit-l1"
    r = await api.client.get(url, headers={"If-None-Match": second.headers["etag"]})
    assert r.status_code == 304
    missing = await api.client.get(f"{V1}/shops/0190a4c5-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_catalog_summary_counts_prices_and_follows_writes(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    url = f"{V1}/shops/{shop['id']}/catalog/summary"
    empty = await api.client.get(url)
    assert empty.status_code == 200
    assert empty.json() == {"shop_id": shop["id"], "products": 0, "categories": []}

    await api.product(staff, shop, category="books", price_cents=500, stock=0)
    await api.product(staff, shop, category="books", price_cents=1500, stock=4)
    tea = await api.product(staff, shop, category="tea", price_cents=900, stock=2)
    await api.product(staff, shop, category="tea", price_cents=2000, stock=1, currency="USD")
    body = (await api.client.get(url)).json()
    assert body["products"] == 4
    assert body["categories"] == [
        {
            "category": "books",
            "currency": "EUR",
            "products": 2,
            "in_stock": 1,
            "units_in_stock": 4,
            "min_price_cents": 500,
            "max_price_cents": 1500,
        },
        {
            "category": "tea",
            "currency": "EUR",
            "products": 1,
            "in_stock": 1,
            "units_in_stock": 2,
            "min_price_cents": 900,
            "max_price_cents": 900,
        },
        {
            "category": "tea",
            "currency": "USD",
            "products": 1,
            "in_stock": 1,
            "units_in_stock": 1,
            "min_price_cents": 2000,
            "max_price_cents": 2000,
        },
    ]
    cached = await api.client.get(url)
    assert cached.headers["x-cache"] == "hit-l1"
    assert (
        await api.client.get(url, headers={"If-None-Match": cached.headers["etag"]})
    ).status_code == 304

    customer = await api.user()
    await api.order(customer, shop, (tea, 2))  # sells out the EUR tea
    after = (await api.client.get(url)).json()["categories"][1]
    assert after["in_stock"] == 0
    assert after["units_in_stock"] == 0
    await api.client.delete(product_url(shop, tea), headers=staff.auth)
    assert [c["category"] for c in (await api.client.get(url)).json()["categories"]] == [
        "books",
        "tea",
    ]
    missing = await api.client.get(
        f"{V1}/shops/0190a4c5-0000-7000-8000-000000000000/catalog/summary"
    )
    assert missing.status_code == 404


async def test_cache_setting_off_reads_the_database_every_time(database_url: str) -> None:
    app = create_app(make_settings(database_url, cache={"enabled": False}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client)
                _owner, staff, shop = await shop_with_staff(api)
                product = await api.product(staff, shop)
                url = product_url(shop, product)
                first, second = await client.get(url), await client.get(url)
                assert first.headers["x-cache"] == second.headers["x-cache"] == "off"
                assert first.headers["etag"] == second.headers["etag"]
                assert (
                    await client.get(url, headers={"If-None-Match": first.headers["etag"]})
                ).status_code == 304
                assert resources.cache.stats.hits_l1 == resources.cache.stats.misses == 0
        finally:
            await _empty_tables(resources)


async def test_concurrent_identical_gets_share_one_query(
    api: Api, resources: Resources, count_queries: Callable[[], QueryCounter]
) -> None:
    """Single-flight: 20 concurrent misses of one product make one SELECT between them.

    The test holds a lock that blocks the first reader's query, so all 20 requests are
    surely in flight together before the database answers."""
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = product_url(shop, product)
    shared_before = resources.cache.stats.coalesced
    async with resources.engine.connect() as blocker:
        if blocker.dialect.name == "postgresql":
            await blocker.execute(text("LOCK TABLE products IN ACCESS EXCLUSIVE MODE"))
        else:
            await blocker.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: holds the write lock
        counter = count_queries()
        counter.reset()
        tasks = [asyncio.create_task(api.client.get(url)) for _ in range(20)]
        await eventually(lambda: resources.cache._flights.shared - shared_before >= 19)
        await blocker.rollback()
    responses = await asyncio.gather(*tasks)
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert sorted(r.headers["x-cache"] for r in responses) == ["coalesced"] * 19 + ["miss"]
    product_selects = [s for s in counter.statements if "FROM products" in s]
    assert len(product_selects) == 1, counter.statements
    # and the lone query filled the cache
    assert (await api.client.get(url)).headers["x-cache"] == "hit-l1"
