"""GraphQL beside REST, in-process: the same reads measured side by side and profiled.

    .venv/bin/python bench/profile_graphql.py [--database-url URL] [--redis-url URL]
        [--requests 500] [--profile] [--html DIR]

Builds the app (no network, no load generator), seeds a shop with 200 products and 40
orders through the API, then for each pair (the cached product read, the staff's page of 20
orders with shop, lines, products and payments) sends the REST request and its GraphQL
equivalent ``--requests`` times each, alternating in rounds so both see the same machine,
and prints the CPU time per request and the GraphQL/REST ratio; first, the document
pipeline's CPU per operation with and without the per-text document cache. ``--profile``
adds pyinstrument's call tree of each GraphQL operation: where its time goes (parsing,
validation, the limits' rules, extensions, resolvers). Ratios, never absolute numbers, are
what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx2
from asgi_lifespan import LifespanManager
from pyinstrument import Profiler

from bench.profile_hot_paths import PASSWORD, settings_for
from storefront.app import create_app
from storefront.cli import run_migrations
from storefront.graphql.schema import BATCHES, build_schema
from storefront.web.graphql import GraphQLContext

PRODUCT = (
    "query Product($shop: UUID!, $id: UUID!) "
    "{ product(shopId: $shop, id: $id) { id sku name price stock version } }"
)
ORDERS = (
    "query Orders($shop: UUID!) { orders(shopId: $shop, first: 20) { nodes { "
    "id status total createdAt shop { id name } "
    "lines { sku quantity unitPrice lineTotal product { id name stock } } "
    "payments { id status amount } } pageInfo { hasNextPage endCursor } } }"
)
# the same selection under viewer, which refuses an anonymous caller before any read
VIEWER_ORDERS = (
    "query ViewerOrders { viewer { orders(first: 20) { nodes { "
    "id status total createdAt shop { id name } "
    "lines { sku quantity unitPrice lineTotal product { id name stock } } "
    "payments { id status amount } } pageInfo { hasNextPage endCursor } } } }"
)
ADDRESS = {
    "name": "Profile Customer",
    "line1": "1 Profile Street",
    "city": "Testville",
    "postal_code": "12345",
    "country": "DE",
}


async def seed(client: httpx2.AsyncClient) -> tuple[str, str, dict[str, str]]:
    email = f"g-{uuid.uuid4().hex[:8]}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "G"}
    )
    r.raise_for_status()
    token = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    shop = (
        await client.post(
            "/api/v1/shops", json={"name": "G", "slug": f"g-{uuid.uuid4().hex[:8]}"}, headers=auth
        )
    ).json()
    items = [
        {
            "sku": f"G-{i:04d}",
            "name": f"Product {i}",
            "description": "profiled",
            "price_cents": 100 + i,
            "currency": "EUR",
            "stock": 100_000,
            "category": "a",
        }
        for i in range(200)
    ]
    r = await client.post(
        f"/api/v1/shops/{shop['id']}/products/bulk", json={"items": items}, headers=auth
    )
    r.raise_for_status()
    products = (await client.get(f"/api/v1/shops/{shop['id']}/products?limit=100")).json()
    ids = [p["id"] for p in products["items"]]
    for n in range(40):  # the owner orders from their own shop: staff and customer at once
        lines = [{"product_id": ids[(n + i) % len(ids)], "quantity": 1 + i} for i in range(3)]
        r = await client.post(
            f"/api/v1/shops/{shop['id']}/orders",
            json={"lines": lines, "shipping_address": ADDRESS},
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        r.raise_for_status()
    return shop["id"], ids[0], auth


Call = Callable[[], Awaitable[httpx2.Response]]


async def timed(call: Call, n: int) -> float:
    """CPU seconds per request over ``n`` requests (this process runs client and app alike:
    CPU time, unlike wall time, does not count waiting on a machine busy with other work)."""
    start = time.process_time()
    for _ in range(n):
        r = await call()
        if r.status_code != 200:
            raise RuntimeError(r.text)
    return (time.process_time() - start) / n


async def document_pipeline(n: int) -> None:
    """CPU per operation of the document pipeline (parse, validate with the limits' rules,
    the extensions; one resolver that refuses an anonymous caller at once), with and without
    the per-text document cache, alternating in rounds."""
    schemas = {cached: build_schema(document_cache=cached) for cached in (False, True)}
    # an anonymous caller: viewer refuses it before touching the resources
    anonymous = GraphQLContext(cast(Any, None), None, BATCHES, None)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(5):
        for cached, schema in schemas.items():
            start = time.process_time()
            for _ in range(n // 5):
                result = await schema.execute(VIEWER_ORDERS, context_value=anonymous)
                if not result.errors:
                    raise RuntimeError("viewer should refuse an anonymous caller")
            times[cached].append((time.process_time() - start) / (n // 5))
    off, on = (statistics.median(times[c]) * 1000 for c in (False, True))
    print(f"document pipeline, CPU ms per operation: uncached {off:.3f}, cached {on:.3f}, ")
    print(f"  ratio {off / on:.1f}x")


async def run(args: argparse.Namespace) -> None:
    await document_pipeline(args.requests)
    if args.no_document_cache:  # the app as it was before the document cache
        import storefront.graphql.router as router

        names = vars(router)
        names["build_schema"] = functools.partial(names["build_schema"], document_cache=False)
    app = create_app(settings_for(args.database_url, args.redis_url, True))
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://p") as client:
            shop_id, product_id, auth = await seed(client)

            def gql(query: str, variables: dict[str, Any], headers: dict[str, str]) -> Call:
                body = {"query": query, "variables": variables}
                return lambda: client.post("/graphql", json=body, headers=headers)

            pairs: dict[str, tuple[Call, Call]] = {
                "product (anonymous, cached)": (
                    lambda: client.get(f"/api/v1/shops/{shop_id}/products/{product_id}"),
                    gql(PRODUCT, {"shop": shop_id, "id": product_id}, {}),
                ),
                # signed in: never from the whole-answer cache, so the document is executed
                "product (signed in)": (
                    lambda: client.get(
                        f"/api/v1/shops/{shop_id}/products/{product_id}", headers=auth
                    ),
                    gql(PRODUCT, {"shop": shop_id, "id": product_id}, auth),
                ),
                "staff's 20 orders, nested": (
                    lambda: client.get(f"/api/v1/shops/{shop_id}/orders?limit=20", headers=auth),
                    gql(ORDERS, {"shop": shop_id}, auth),
                ),
            }
            print(f"{'pair (CPU per request)':32} {'REST ms':>9} {'GraphQL ms':>11} {'ratio':>7}")
            for name, (rest, graphql) in pairs.items():
                check = (await graphql()).json()
                if check.get("errors"):
                    raise RuntimeError(str(check))
                await timed(rest, 20)  # warm
                await timed(graphql, 20)
                rounds = 5
                rest_times, gql_times = [], []
                for _ in range(rounds):
                    rest_times.append(await timed(rest, args.requests // rounds))
                    gql_times.append(await timed(graphql, args.requests // rounds))
                r_ms = statistics.median(rest_times) * 1000
                g_ms = statistics.median(gql_times) * 1000
                print(f"{name:32} {r_ms:9.3f} {g_ms:11.3f} {g_ms / r_ms:6.1f}x")
            if not args.profile:
                return
            for name, (_rest, graphql) in pairs.items():
                profiler = Profiler(async_mode="enabled", interval=0.0005)
                with profiler:
                    await timed(graphql, args.requests)
                print(f"\n===== GraphQL {name}: {args.requests} requests =====")
                print(profiler.output_text(unicode=False, color=False, show_all=False))
                if args.html:
                    slug = name.split(" ")[0].strip("'")
                    (Path(args.html) / f"graphql-{slug}.html").write_text(profiler.output_html())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--html")
    parser.add_argument("--no-document-cache", action="store_true")
    args = parser.parse_args()
    if args.database_url is None:
        path = Path(tempfile.mkdtemp()) / "profile.db"
        args.database_url = f"sqlite+aiosqlite:///{path}"
    run_migrations(database_url=args.database_url)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
