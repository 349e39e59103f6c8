"""CPU time per request of the hot read paths, in-process (decision 0060).

    .venv/bin/python -m bench.hot_path_cpu [--database-url URL] [--redis-url URL]
        [--requests 4000] [--concurrency 16] [--lease-ms 20] [--orders-only]

Calls the ASGI app directly (no HTTP client, no server), with ``--concurrency`` callers at
once, and reports this process's CPU time per request (``time.process_time``) and the Redis
commands per request. CPU time, unlike wall time, hardly moves with other work on a shared
machine, so two variants can be compared in one run (e.g. ``--lease-ms 0`` against the
default, or ``?limit=020``, which the fast path leaves to the route, against ``?limit=20``).
PostgreSQL: pass ``--database-url`` of an empty, migrated database, or nothing for SQLite.

The order paths (a page of 20 orders, staff and the customer's own; placing an order with an
Idempotency-Key, three lines) run once, with the cache on, as in the benchmark's mixed load.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import orjson
from asgi_lifespan import LifespanManager
from pyinstrument import Profiler

from bench.profile_hot_paths import PASSWORD, seed, settings_for
from bench.run import order_payload
from storefront.app import create_app
from storefront.cli import run_migrations


async def call(
    app: Any,
    path: str,
    query: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(args: argparse.Namespace, cache: bool) -> None:
    settings = settings_for(args.database_url, args.redis_url, cache)
    settings.cache.lease_ms = args.lease_ms
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as client:
            shop_id, product_id = await seed(client)
        runtime = app.state.runtime
        commands = 0
        if runtime.redis is not None:
            real = runtime.redis.execute_command

            async def counted(*a: Any, **k: Any) -> Any:
                nonlocal commands
                commands += 1
                return await real(*a, **k)

            runtime.redis.execute_command = counted
        paths = {
            "product": (f"/api/v1/shops/{shop_id}/products/{product_id}", ""),
            "listing (fast path)": (f"/api/v1/shops/{shop_id}/products", "limit=20"),
            "listing (route)": (f"/api/v1/shops/{shop_id}/products", "limit=020"),
        }
        per_caller = args.requests // args.concurrency
        for name, (path, query) in paths.items():
            for _ in range(20):  # fill the caches, open the pools
                if (status := await call(app, path, query)) != 200:
                    raise RuntimeError(f"{name}: {status}")

            async def caller(path: str = path, query: str = query) -> None:
                for _ in range(per_caller):
                    await call(app, path, query)

            before = commands
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = per_caller * args.concurrency
            print(
                f"cache {'on ' if cache else 'off'} {name:20} {1e6 * cpu / n:8.1f} µs CPU/request"
                f"  {1e6 * wall / n:8.1f} µs wall  {(commands - before) / n:.2f} Redis commands"
                "/request"
            )


async def user(client: httpx2.AsyncClient, name: str) -> bytes:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name}
    )
    r.raise_for_status()
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return f"Bearer {r.json()['access_token']}".encode()


def order_body(product_ids: list[str], n: int) -> bytes:
    return orjson.dumps(order_payload(product_ids, n))


async def measure_orders(args: argparse.Namespace) -> None:
    """CPU per request of the order paths (as bench/run.py seeds them: 3 lines an order)."""
    app = create_app(settings_for(args.database_url, args.redis_url, True))
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as client:
            staff, customer = await user(client, "owner"), await user(client, "customer")
            shop = (
                await client.post(
                    "/api/v1/shops",
                    json={"name": "B", "slug": f"b-{uuid.uuid4().hex[:8]}"},
                    headers={"Authorization": staff.decode()},
                )
            ).json()["id"]
            items = [
                {
                    "sku": f"B-{i:04d}",
                    "name": f"Bench product {i}",
                    "description": "bench",
                    "category": "tools",
                    "price_cents": 100 + i,
                    "currency": "EUR",
                    "stock": 1_000_000_000,
                }
                for i in range(50)
            ]
            r = await client.post(
                f"/api/v1/shops/{shop}/products/bulk",
                json={"items": items},
                headers={"Authorization": staff.decode()},
            )
            r.raise_for_status()
            page = (await client.get(f"/api/v1/shops/{shop}/products?limit=100")).json()
            product_ids = [p["id"] for p in page["items"]]
        path = f"/api/v1/shops/{shop}/orders"
        json_headers = [(b"content-type", b"application/json")]
        counter = iter(range(10**9))

        def create() -> tuple[str, str, str, list[tuple[bytes, bytes]], bytes]:
            n = next(counter)
            key = (b"idempotency-key", str(uuid.uuid4()).encode())
            headers = [(b"authorization", customer), key, *json_headers]
            return "POST", path, "", headers, order_body(product_ids, n)

        scenarios = {
            "order creation": create,
            "order listing (staff)": lambda: (
                "GET",
                path,
                "limit=20",
                [(b"authorization", staff)],
                b"",
            ),
            "order listing (own)": lambda: (
                "GET",
                path,
                "limit=20",
                [(b"authorization", customer)],
                b"",
            ),
        }
        expected = {"order creation": 201}
        per_caller = args.requests // args.concurrency
        profiler = Profiler(async_mode="enabled", interval=0.0005) if args.profile else None
        for name, make in scenarios.items():
            for _ in range(40):  # warm up; gives the listings full pages
                method, p, q, h, b = make()
                if (status := await call(app, p, q, method=method, headers=h, body=b)) != (
                    expected.get(name, 200)
                ):
                    raise RuntimeError(f"{name}: {status}")

            async def caller(make: Any = make) -> None:
                for _ in range(per_caller):
                    method, p, q, h, b = make()
                    await call(app, p, q, method=method, headers=h, body=b)

            if profiler is not None:
                profiler.reset()
                profiler.start()
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = per_caller * args.concurrency
            print(f"{name:24} {1e6 * cpu / n:8.1f} µs CPU/request  {1e6 * wall / n:8.1f} µs wall")
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lease-ms", type=int, default=20)
    parser.add_argument("--orders-only", action="store_true", help="only the order paths")
    parser.add_argument("--profile", action="store_true", help="pyinstrument, order paths")
    args = parser.parse_args()
    if args.database_url is None:
        args.database_url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'cpu.db'}"
        run_migrations(database_url=args.database_url)
    asyncio.run(measure_orders(args))
    if args.orders_only:
        return
    for cache in (True, False):
        asyncio.run(measure(args, cache))


if __name__ == "__main__":
    main()
