"""The cache-hit fast path (decision 0060): a GET of a cached product or catalog summary
that hits this process's L1 is answered before FastAPI's routing, with exactly what the
route would have sent, and with every outer layer still applied (request id, security
headers, metrics under the route template); anything it is not sure of goes to the route."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from storefront.catalog.reads import CatalogReads
from storefront.resources import Resources
from tests.cache.test_response_cache_redis import instance
from tests.conftest import _empty_tables
from tests.support.factories import V1, Api, shop_with_staff
from tests.telemetry.test_metrics import scrape, value

PRODUCT_ROUTE = f"{V1}/shops/{{shop_id}}/products/{{product_id}}"
PER_REQUEST = {"date", "x-request-id", "x-cache", "ratelimit"}


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the requests the product and summary routes themselves handled (their
    endpoints call these; the fast path never does)."""
    calls: list[str] = []
    for name in ("product", "summary", "listing"):
        original = getattr(CatalogReads, name)

        async def counted(
            self: CatalogReads, *args: Any, _o: Any = original, _n: str = name, **kw: Any
        ) -> Any:
            calls.append(_n)
            return await _o(self, *args, **kw)

        monkeypatch.setattr(CatalogReads, name, counted)
    return calls


def comparable(response: httpx2.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_REQUEST}


async def test_a_hit_is_answered_before_routing_with_the_routes_exact_answer(
    api: Api, resources: Resources, route_calls: list[str]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
    before = await scrape(api.client)

    miss = await api.client.get(url)  # the route computes and fills L1
    assert miss.headers["x-cache"] == "miss"
    assert route_calls == ["product"]
    hit = await api.client.get(url, headers={"X-Request-ID": "fast-path-request-1"})
    assert route_calls == ["product"]  # answered before routing
    assert hit.status_code == 200
    assert hit.headers["x-cache"] == "hit-l1"
    assert hit.headers["x-request-id"] == "fast-path-request-1"
    assert hit.content == miss.content
    assert comparable(hit) == comparable(miss)  # security headers, ETag, Cache-Control...
    assert hit.headers["content-security-policy"]
    assert hit.headers["ratelimit"]  # the rate limiter still ran

    not_modified = await api.client.get(url, headers={"If-None-Match": hit.headers["etag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == hit.headers["etag"]
    assert route_calls == ["product"]

    after = await scrape(api.client)
    counted = value(
        after,
        "storefront_http_requests_total",
        method="GET",
        route=PRODUCT_ROUTE,
        status_class="2xx",
    ) - value(
        before,
        "storefront_http_requests_total",
        method="GET",
        route=PRODUCT_ROUTE,
        status_class="2xx",
    )
    assert counted == 2  # the miss and the hit, under the route's template (304 is 3xx)

    # a write: the next GET is the route's again, then the fast path's
    etag = hit.headers["etag"]
    patched = await api.client.patch(
        url, json={"name": "renamed"}, headers={**staff.auth, "If-Match": etag}
    )
    assert patched.status_code == 200, patched.text
    fresh = await api.client.get(url)
    assert fresh.json()["name"] == "renamed"
    assert route_calls == ["product", "product"]
    assert (await api.client.get(url)).content == fresh.content
    assert route_calls == ["product", "product"]
    assert resources.cache.stats.hits_l1 >= 3


async def test_the_summary_is_served_by_the_fast_path_too(api: Api, route_calls: list[str]) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/catalog/summary"
    first, second = await api.client.get(url), await api.client.get(url)
    assert second.content == first.content
    assert second.headers["x-cache"] == "hit-l1"
    assert route_calls == ["summary"]


async def test_what_the_fast_path_is_unsure_of_goes_to_the_route(
    api: Api, route_calls: list[str]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop)
    url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
    await api.client.get(url)
    assert route_calls == ["product"]

    # the same product, its ids in upper case: the same key, the same answer
    upper = f"{V1}/shops/{str(shop['id']).upper()}/products/{str(product['id']).upper()}"
    assert (await api.client.get(upper)).content == (await api.client.get(url)).content
    assert route_calls == ["product"]
    # a query string and a repeated If-None-Match go to the route
    assert (await api.client.get(url, params={"x": "1"})).status_code == 200
    repeated = await api.client.get(
        url, headers=[("If-None-Match", '"a"'), ("If-None-Match", '"b"')]
    )
    assert repeated.status_code == 200
    assert route_calls == ["product"] * 3
    # ...and so do what the route refuses: a too-long If-None-Match, a malformed id
    too_long = await api.client.get(url, headers={"If-None-Match": '"' + "a" * 1100 + '"'})
    assert too_long.status_code == 422
    assert too_long.headers["content-type"].startswith("application/problem+json")
    bad = await api.client.get(f"{V1}/shops/{shop['id']}/products/not-a-uuid")
    assert bad.status_code == 422
    # HEAD is not a GET: the fast path leaves it alone as well
    assert (await api.client.head(url)).status_code == 405


async def test_listing_pages_are_served_by_the_fast_path_with_their_link(
    api: Api, route_calls: list[str]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop, category="tea")
    url = f"{V1}/shops/{shop['id']}/products"
    for params in ({"limit": "2", "category": "tea"}, {"limit": "2", "q": "a"}, {}):
        first = await api.client.get(url, params=params)
        assert first.headers["x-cache"] == "miss", params
        calls = len(route_calls)
        again = await api.client.get(url, params=params)
        assert len(route_calls) == calls, params  # answered before routing
        assert again.headers["x-cache"] == "hit-l1"
        assert again.content == first.content
        assert comparable(again) == comparable(first)  # the Link header included
    page = await api.client.get(url, params={"limit": "2", "category": "tea"})
    assert page.headers["link"].endswith('>; rel="next"')
    cursor = page.json()["next_cursor"]
    second = await api.client.get(url, params={"limit": "2", "category": "tea", "cursor": cursor})
    calls = len(route_calls)
    assert (
        await api.client.get(url, params={"limit": "2", "category": "tea", "cursor": cursor})
    ).content == second.content
    assert len(route_calls) == calls

    # what the route would read otherwise, or refuse, goes to it
    for params, status in (
        ({"limit": "02"}, 200),
        ({"limit": "2", "x": "y"}, 200),
        ({"limit": "0"}, 422),
        ({"limit": "101"}, 422),
        ({"q": ""}, 422),
        ({"cursor": "not-a-cursor"}, 422),
    ):
        calls = len(route_calls)
        r = await api.client.get(url, params=params)
        assert r.status_code == status, (params, r.text)
        assert len(route_calls) == calls + (status == 200), params  # the route handled it


async def test_concurrent_hits_in_full_mode_never_fall_through_to_the_route(
    database_url: str, redis_url: str, redis_prefix: str, route_calls: list[str]
) -> None:
    """With Redis, many concurrent GETs of cached products are all answered by the fast path
    (none falls through into routing, none reads through to the database), and their
    lookups share generation reads instead of taking a Redis connection each: more
    concurrent lookups than the process's Redis pool has connections once sent every
    request of a burst to the route and the database (Redis counted down)."""
    async with instance(database_url, redis_url, redis_prefix) as (resources, api):
        try:
            _owner, staff, shop = await shop_with_staff(api)
            products = [await api.product(staff, shop) for _ in range(3)]
            urls = [f"{V1}/shops/{shop['id']}/products/{p['id']}" for p in products]
            for url in urls:
                assert (await api.client.get(url)).headers["x-cache"] == "miss"
            route_calls.clear()
            stats = resources.cache.stats
            before = (stats.redis_errors, stats.bypassed, stats.hits_l1)
            burst = await asyncio.gather(*(api.client.get(urls[n % 3]) for n in range(150)))
            assert {(r.status_code, r.headers["x-cache"]) for r in burst} == {(200, "hit-l1")}
            assert route_calls == []  # every one answered before routing
            after = (stats.redis_errors, stats.bypassed, stats.hits_l1)
            assert after == (before[0], before[1], before[2] + 150)
        finally:
            await _empty_tables(resources)
