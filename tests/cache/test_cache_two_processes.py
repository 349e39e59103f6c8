"""Two real server processes (`storefront serve`) on one database and one Redis: once a
write is acknowledged by one process, the other never serves the old representation, even
from its warm in-process L1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from tests.support.factories import ProductInFactory, unique
from tests.support.servers import cli_env, serve, stop, wait_ready

PASSWORD = "a-long-enough-password"


@contextmanager
def server(env: dict[str, str]) -> Iterator[str]:
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        yield base
    finally:
        stop(proc)


def test_acknowledged_writes_are_never_stale_on_the_other_process(
    migrated_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = cli_env(
        migrated_database, STOREFRONT_REDIS_URL=redis_url, STOREFRONT_REDIS_PREFIX=redis_prefix
    )
    with server(env) as base_a, server(env) as base_b:
        a = httpx2.Client(base_url=base_a, timeout=30)
        b = httpx2.Client(base_url=base_b, timeout=30)
        try:
            email = f"{unique('op')}@example.com"
            r = a.post(
                "/api/v1/auth/register",
                json={"email": email, "password": PASSWORD, "display_name": "Op"},
            )
            assert r.status_code == 201, r.text
            login = a.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            shop = a.post(
                "/api/v1/shops", json={"name": "S", "slug": unique("s").lower()}, headers=auth
            ).json()
            body = ProductInFactory.build(stock=100).model_dump()
            product = a.post(f"/api/v1/shops/{shop['id']}/products", json=body, headers=auth)
            assert product.status_code == 201, product.text
            url = f"/api/v1/shops/{shop['id']}/products/{product.json()['id']}"
            listing = f"/api/v1/shops/{shop['id']}/products"

            sources: set[str] = set()
            for n in range(15):
                # warm both levels on B, then write on A
                for _ in range(2):
                    sources.add(b.get(url).headers["x-cache"])
                    b.get(listing)
                etag = a.get(url).headers["etag"]
                patched = a.patch(url, json={"name": f"v{n}"}, headers={**auth, "If-Match": etag})
                assert patched.status_code == 200, patched.text
                seen = b.get(url)
                assert seen.json()["name"] == f"v{n}", (n, seen.headers["x-cache"])
                assert seen.headers["etag"] == patched.headers["etag"]
                assert b.get(listing).json()["items"][0]["name"] == f"v{n}"
            assert {"hit-l1"} <= sources  # B really did serve from its L1 between writes

            # stock taken by an order on A is part of the product on B at once
            order = a.post(
                f"/api/v1/shops/{shop['id']}/orders",
                json={
                    "lines": [{"product_id": product.json()["id"], "quantity": 7}],
                    "shipping_address": {
                        "name": "A",
                        "line1": "1 Road",
                        "city": "X",
                        "postal_code": "1",
                        "country": "GB",
                    },
                },
                headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert order.status_code == 201, order.text
            assert b.get(url).json()["stock"] == 93
            assert b.get(listing).json()["items"][0]["stock"] == 93
        finally:
            a.close()
            b.close()
