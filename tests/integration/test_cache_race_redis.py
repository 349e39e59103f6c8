"""The late-fill race across processes, on real Redis: a reader that read the generations
before a write committed files the old value under the old generation, so neither its own
process nor another one ever serves it."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from storefront.platform.cache import Entry, ResponseCache, make_entry
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
        for cache in caches:
            await cache.aclose()
        for c in clients:
            await c.aclose()


async def _held(cache: ResponseCache, key: str, tags: list[str]) -> None:
    """Look up until the cache holds its lease (renewed on demand by lookups), then once
    more: the first lookup under a new subscription reads the generations from Redis."""
    async with asyncio.timeout(20):
        while not cache.holds_lease():
            await cache.peek("t", key, tags)
            await asyncio.sleep(0.005)
    await cache.peek("t", key, tags)


async def test_hits_under_a_lease_make_no_round_trip_and_writes_still_reach_them(
    redis_url: str, redis_prefix: str
) -> None:
    """The mirror protocol (decision 0060): while a process holds its lease, an L1 hit reads
    its tags' generations from the mirror, not Redis; a write on another process, once
    ``invalidate`` has returned (the client's acknowledgement), is never served old."""
    clients: list[Redis] = [create_redis(redis_url) for _ in range(2)]
    # a long lease, so a busy test machine cannot let it lapse between two lookups
    reader, writer = (ResponseCache(redis=c, prefix=redis_prefix, lease_ms=400) for c in clients)
    commands = 0
    real = clients[0].execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        nonlocal commands
        commands += 1
        return await real(*args, **options)

    clients[0].execute_command = counted  # type: ignore[method-assign]
    try:
        for n in range(4):
            current = make_entry(f'"v{n}"'.encode())

            async def compute(entry: Entry = current) -> Entry:
                return entry

            filled, _ = await reader.get_or_compute("t", "k", ["tag", "other"], compute)
            assert filled.body == current.body
            await _held(reader, "k", ["tag", "other"])
            before = commands
            for _ in range(50):
                hit, source = await reader.get_or_compute("t", "k", ["tag", "other"], compute)
                assert (hit.body, source) == (current.body, "hit-l1")
                if not reader.holds_lease():
                    break
            else:
                assert commands == before  # 50 hits, no command on the reader's client

            await writer.invalidate(["tag"])  # returns after the lease wait: "acknowledged"
            assert await reader.peek("t", "k", ["tag", "other"]) is None
        assert reader.lease_renewals >= 1
    finally:
        for cache in (reader, writer):
            await cache.aclose()
        for c in clients:
            await c.aclose()


async def test_a_lost_subscription_drops_the_lease_and_the_mirror(
    redis_url: str, redis_prefix: str
) -> None:
    """Invalidations published while a process is not subscribed never reach it, so a new
    subscription trusts nothing learned before it: the lease ends with the connection."""
    clients: list[Redis] = [create_redis(redis_url) for _ in range(2)]
    reader, writer = (ResponseCache(redis=c, prefix=redis_prefix, lease_ms=400) for c in clients)
    try:
        entry = make_entry(b'"old"')

        async def compute() -> Entry:
            return entry

        await reader.get_or_compute("t", "k", ["tag"], compute)
        await _held(reader, "k", ["tag"])
        killed = await clients[1].client_kill_filter(_type="pubsub")  # every subscriber
        assert killed >= 1
        await writer.invalidate(["tag"])  # published while the reader is not subscribed
        # redis-py reconnects and subscribes again by itself on the next PING; a lease
        # granted then must not trust the mirror (renewed here without a lookup, which
        # would read Redis and so hide a stale mirror)
        async with asyncio.timeout(20):
            while not reader.holds_lease():
                reader._want_lease(clients[0])
                await asyncio.sleep(0.005)
        assert await reader.peek("t", "k", ["tag"]) is None
    finally:
        for cache in (reader, writer):
            await cache.aclose()
        for c in clients:
            await c.aclose()
