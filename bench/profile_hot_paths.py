"""Profile the hot read paths in-process with pyinstrument (no network, no load generator).

    .venv/bin/python bench/profile_hot_paths.py [--database-url URL] [--redis-url URL]
        [--requests 2000] [--html DIR]

Builds the app, creates a shop with 200 products through the API, then profiles each path
(product GET cached and uncached, listing cached and uncached, catalog summary) and prints
pyinstrument's call tree, so you can see where a request's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx2
from asgi_lifespan import LifespanManager
from pyinstrument import Profiler

from storefront.app import create_app
from storefront.cli import run_migrations
from storefront.settings import Settings

PASSWORD = "profile-password-0123"


def settings_for(database_url: str, redis_url: str | None, cache: bool) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"profile:{uuid.uuid4().hex[:8]}:",
        auth={"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
        cache={"enabled": cache},
        observability={"log_level": "WARNING"},
        rate_limit_enabled=False,  # one client address sends everything
    )


async def seed(client: httpx2.AsyncClient) -> tuple[str, str]:
    email = f"p-{uuid.uuid4().hex[:8]}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "P"}
    )
    r.raise_for_status()
    token = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    shop = (
        await client.post(
            "/api/v1/shops", json={"name": "P", "slug": f"p-{uuid.uuid4().hex[:8]}"}, headers=auth
        )
    ).json()
    items: list[dict[str, Any]] = [
        {
            "sku": f"P-{i:04d}",
            "name": f"Product {i}",
            "description": "profiled",
            "price_cents": 100 + i,
            "currency": "EUR",
            "stock": 10,
            "category": ("a", "b", "c")[i % 3],
        }
        for i in range(200)
    ]
    r = await client.post(
        f"/api/v1/shops/{shop['id']}/products/bulk", json={"items": items}, headers=auth
    )
    r.raise_for_status()
    listing = (await client.get(f"/api/v1/shops/{shop['id']}/products?limit=1")).json()
    return shop["id"], listing["items"][0]["id"]


async def profile(args: argparse.Namespace, cache: bool) -> None:
    app = create_app(settings_for(args.database_url, args.redis_url, cache))
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://p") as client:
            shop_id, product_id = await seed(client)
            paths = {
                "product": f"/api/v1/shops/{shop_id}/products/{product_id}",
                "listing": f"/api/v1/shops/{shop_id}/products?limit=20",
                "summary": f"/api/v1/shops/{shop_id}/catalog/summary",
            }
            for name, path in paths.items():
                await client.get(path)  # warm (and fill, when caching)
                profiler = Profiler(async_mode="enabled", interval=0.0005)
                with profiler:
                    for _ in range(args.requests):
                        r = await client.get(path)
                        assert r.status_code == 200, r.text
                label = f"{name} cache={'on' if cache else 'off'}"
                print(f"\n===== {label}: {args.requests} requests =====")
                print(profiler.output_text(unicode=False, color=False, show_all=False))
                if args.html:
                    out = Path(args.html) / f"{name}-cache-{'on' if cache else 'off'}.html"
                    out.write_text(profiler.output_html())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--html")
    args = parser.parse_args()
    if args.database_url is None:
        path = Path(tempfile.mkdtemp()) / "profile.db"
        args.database_url = f"sqlite+aiosqlite:///{path}"
    run_migrations(database_url=args.database_url)
    for cache in (False, True):
        asyncio.run(profile(args, cache))


if __name__ == "__main__":
    main()
