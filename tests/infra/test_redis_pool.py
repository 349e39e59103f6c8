"""The process's Redis pool under more concurrent callers than it has connections."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from storefront.infra.redis import MAX_CONNECTIONS, create_redis

pytestmark = pytest.mark.redis


async def test_more_callers_than_connections_wait_instead_of_failing(redis_url: str) -> None:
    # the plain pool raised MaxConnectionsError past 64 callers; the rate limiter and the
    # cache took that for an outage and fell back under exactly the load they exist for
    client = create_redis(redis_url)
    key = f"test:pool:{uuid.uuid4().hex}"
    try:
        # BLPOP with a short timeout holds its connection for a while, so every caller
        # needs one at the same time
        results = await asyncio.gather(
            *(client.blpop([key], timeout=0.05) for _ in range(MAX_CONNECTIONS * 3))
        )
        assert results == [None] * (MAX_CONNECTIONS * 3)
    finally:
        await client.aclose()
