"""The late-fill race across processes, on real Redis: a reader that read the generations
before a write committed files the old value under the old generation, so neither its own
process nor another one ever serves it."""

from __future__ import annotations

from redis.asyncio import Redis

from storefront.platform.cache import ResponseCache
from storefront.platform.redis import create_redis
from tests.unit.test_cache_primitives import reader_fills_old_value_after_invalidation


async def test_late_fill_after_invalidation_is_unreachable_everywhere(
    redis_url: str, redis_prefix: str
) -> None:
    clients: list[Redis] = [create_redis(redis_url) for _ in range(3)]
    caches = [ResponseCache(redis=c, prefix=redis_prefix) for c in clients]
    try:
        await reader_fills_old_value_after_invalidation(*caches)
    finally:
        for c in clients:
            await c.aclose()
