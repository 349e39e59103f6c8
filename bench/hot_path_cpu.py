"""CPU time per request of the hot read paths, in-process (decision 0060).

    .venv/bin/python -m bench.hot_path_cpu [--database-url URL] [--redis-url URL]
        [--requests 4000] [--concurrency 16] [--lease-ms 20]

Calls the ASGI app directly (no HTTP client, no server), with ``--concurrency`` callers at
once, and reports this process's CPU time per request (``time.process_time``) and the Redis
commands per request. CPU time, unlike wall time, hardly moves with other work on a shared
machine, so two variants can be compared in one run (e.g. ``--lease-ms 0`` against the
default, or ``?limit=020``, which the fast path leaves to the route, against ``?limit=20``).
PostgreSQL: pass ``--database-url`` of an empty, migrated database, or nothing for SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from asgi_lifespan import LifespanManager

from bench.profile_hot_paths import seed, settings_for
from storefront.app import create_app
from storefront.cli import run_migrations


async def call(app: Any, path: str, query: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lease-ms", type=int, default=20)
    args = parser.parse_args()
    if args.database_url is None:
        args.database_url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'cpu.db'}"
        run_migrations(database_url=args.database_url)
    for cache in (True, False):
        asyncio.run(measure(args, cache))


if __name__ == "__main__":
    main()
