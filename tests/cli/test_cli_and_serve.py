"""The `storefront` command as an operator uses it: migrate, seed (twice), serve, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from pathlib import Path

import httpx2
from sqlalchemy import func, select

from storefront.catalog.models import Product
from storefront.identity.models import User
from storefront.kit.db import create_engine
from storefront.orders.models import Order
from storefront.seed import DEMO_PASSWORD, PRODUCTS_PER_SHOP, SHOPS
from tests.support.factories import ProductInFactory

# the tests below were written with these names: new ones use tests.support.servers' own
from tests.support.servers import cli_env as _env
from tests.support.servers import run_cli as _run
from tests.support.servers import serve, wait_ready


def _counts(url: str) -> tuple[int, int, int]:
    async def read() -> tuple[int, int, int]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                users = (await conn.execute(select(func.count()).select_from(User))).scalar_one()
                products = (
                    await conn.execute(select(func.count()).select_from(Product))
                ).scalar_one()
                orders = (await conn.execute(select(func.count()).select_from(Order))).scalar_one()
        finally:
            await engine.dispose()
        return users, products, orders

    return asyncio.run(read())


def test_migrate_and_seed_are_safe_to_run_twice(empty_database: str) -> None:
    env = _env(empty_database)
    _run(["migrate"], env)
    first = _run(["seed", "--if-empty"], env)
    assert DEMO_PASSWORD in first  # printed once, so the operator can sign in
    users, products, orders = _counts(empty_database)
    assert users == 4
    assert products == len(SHOPS) * PRODUCTS_PER_SHOP >= 1000
    assert orders > 0

    _run(["migrate"], env)
    assert "not seeding" in _run(["seed", "--if-empty"], env)
    assert "nothing to do" in _run(["seed"], env)
    assert _counts(empty_database) == (users, products, orders)


async def _bulk_then_sigterm(base: str, proc: subprocess.Popen[str]) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        password = "a-long-enough-password"
        r = await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password, "display_name": "Op"},
        )
        assert r.status_code == 201, r.text
        token = (
            await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        shop = (
            await client.post(
                "/api/v1/shops",
                json={"name": "S", "slug": f"s-{uuid.uuid4().hex[:8]}"},
                headers=auth,
            )
        ).json()
        items = [ProductInFactory.build().model_dump() for _ in range(1000)]
        request = asyncio.create_task(
            client.post(
                f"/api/v1/shops/{shop['id']}/products/bulk", json={"items": items}, headers=auth
            )
        )
        await asyncio.sleep(0.05)  # the request is on the wire and being handled
        proc.send_signal(signal.SIGTERM)
        return await request


def test_serve_answers_and_stops_cleanly_finishing_in_flight_requests(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"
    env = _env(url)
    _run(["migrate"], env)
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        assert httpx2.get(f"{base}/livez").json() == {"status": "ok"}
        response = asyncio.run(_bulk_then_sigterm(base, proc))
        assert response.status_code == 200, response.text
        assert response.json() == {"created": 1000, "updated": 0}
        # uvicorn finishes in-flight requests, then re-raises SIGTERM (the conventional exit)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert "Finished server process" in output
