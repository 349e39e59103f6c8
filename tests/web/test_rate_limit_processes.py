"""Two real server processes on one Redis draw on one rate-limit budget."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx2

from tests.conftest import migrated_sqlite
from tests.support.paths import V1
from tests.support.servers import cli_env, serve, stop, wait_ready


def test_two_processes_share_one_budget(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    url = migrated_sqlite(tmp_path / "shared.db")
    env = cli_env(
        url,
        STOREFRONT_REDIS_URL=redis_url,
        STOREFRONT_REDIS_PREFIX=redis_prefix,
        STOREFRONT_PROTECTION__ANONYMOUS_RATE="4/minute",
    )
    first, a = serve(env)
    second, b = serve(env)
    try:
        wait_ready(a, first)
        wait_ready(b, second)
        statuses = []
        for base in (a, b, a, b):
            r = httpx2.get(f"{base}{V1}/shops/{uuid.uuid4()}", timeout=5)
            statuses.append(r.status_code)
        assert statuses == [404, 404, 404, 404]
        # the fourth request (to the second process) saw the budget both had spent
        assert '"anonymous";r=0' in r.headers["RateLimit"]
        for base in (a, b):
            refused = httpx2.get(f"{base}{V1}/shops/{uuid.uuid4()}", timeout=5)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["Retry-After"]) >= 1
            assert "server" not in refused.headers
        health = httpx2.get(f"{a}/healthz", timeout=5).json()["components"]
        assert health["rate_limiter"]["scope"] == "shared"

    finally:
        stop(first)
        stop(second)
