"""The `storefront` command as an operator uses it: migrate, seed (twice), serve, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx2
from sqlalchemy import func, select

from storefront.catalog.models import Product
from storefront.identity.models import User
from storefront.orders.models import Order
from storefront.platform.db import create_engine
from storefront.seed import DEMO_PASSWORD, PRODUCTS_PER_SHOP, SHOPS
from tests.factories import ProductInFactory

CLI = [sys.executable, "-m", "storefront.cli"]


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update(
        STOREFRONT_DATABASE_URL=database_url,
        STOREFRONT_AUTH__ARGON2_TIME_COST="1",
        STOREFRONT_AUTH__ARGON2_MEMORY_KIB="1024",
        STOREFRONT_AUTH__ARGON2_PARALLELISM="1",
        **extra,
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


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
    port = _free_port()
    env = _env(url, STOREFRONT_PORT=str(port))
    _run(["migrate"], env)
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
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
