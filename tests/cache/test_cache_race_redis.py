"""Across processes, on real Redis: the late-fill race (a reader that read the generations
before a write committed files the old value under the old generation, so neither its own
process nor another one ever serves it), and the batched generation reads (decision 0135)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from storefront.cache import Entry, ResponseCache, make_entry
from storefront.infra.redis import create_redis
from tests.cache.test_cache_primitives import reader_fills_old_value_after_invalidation
from tests.support.servers import OwnRedis


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


async def test_concurrent_hits_share_one_generation_read_and_writes_reach_them_at_once(
    redis_url: str, redis_prefix: str
) -> None:
    """Decision 0135: lookups of the same moment share one MGET (so a busy process makes
    fewer round trips per hit, not more), and a write on another process, once
    ``invalidate`` has returned (the client's acknowledgement), is never served old."""
    clients: list[Redis] = [create_redis(redis_url) for _ in range(2)]
    reader, writer = (ResponseCache(redis=c, prefix=redis_prefix) for c in clients)
    try:
        for n in range(3):
            current = make_entry(f'"v{n}"'.encode())

            async def compute(entry: Entry = current) -> Entry:
                return entry

            filled, _ = await reader.get_or_compute("t", "k", ["tag", "other"], compute)
            assert filled.body == current.body
            await reader.get_or_compute("t", f"k2-{n}", ["tag2"], compute)
            reads = reader.stats.generation_reads
            hits = await asyncio.gather(
                *(reader.peek("t", "k", ["tag", "other"]) for _ in range(100)),
                *(reader.peek("t", f"k2-{n}", ["tag2"]) for _ in range(100)),
            )
            assert all(hit is not None and hit.body == current.body for hit in hits)
            assert reader.stats.generation_reads == reads + 1  # one for the 200 lookups

            await writer.invalidate(["tag"])  # returned: the write is acknowledged
            assert await reader.peek("t", "k", ["tag", "other"]) is None
            assert await reader.peek("t", f"k2-{n}", ["tag2"]) is not None  # another tag
    finally:
        for cache in (reader, writer):
            await cache.aclose()
        for c in clients:
            await c.aclose()


async def test_a_lookup_never_uses_a_generation_read_sent_before_it_began(
    redis_url: str, redis_prefix: str
) -> None:
    """A read already in flight may have been handled by Redis before a write a later
    lookup must see: that lookup waits for the next read instead of sharing it. Here the
    first read's answer (the old generation) is held back until another process's write is
    acknowledged and a second lookup has begun."""
    clients: list[Redis] = [create_redis(redis_url) for _ in range(2)]
    reader, writer = (ResponseCache(redis=c, prefix=redis_prefix) for c in clients)
    old = make_entry(b'"old"')

    async def compute() -> Entry:
        return old

    await reader.get_or_compute("t", "k", ["tag"], compute)
    answered, release = asyncio.Event(), asyncio.Event()
    assert reader._reader is not None  # its connection for generation reads
    real: Callable[..., Awaitable[Any]] = reader._reader.execute_command

    async def held(*args: Any, **options: Any) -> Any:
        result = await real(*args, **options)
        if args[0] == "MGET" and not release.is_set():
            answered.set()  # Redis has answered: the old generation
            await release.wait()
        return result

    reader._reader.execute_command = held  # type: ignore[method-assign]
    try:
        early = asyncio.create_task(reader.peek("t", "k", ["tag"]))
        await answered.wait()
        await writer.invalidate(["tag"])  # acknowledged while the first read is held
        late = asyncio.create_task(reader.peek("t", "k", ["tag"]))
        await asyncio.sleep(0.05)  # the late lookup is waiting (for the next read)
        assert not late.done()
        release.set()
        assert await early == old  # began before the write: the old entry is its due
        assert await late is None  # began after the acknowledgement: never the old entry
    finally:
        release.set()
        for cache in (reader, writer):
            await cache.aclose()
        for c in clients:
            await c.aclose()


async def test_a_lookup_that_goes_away_leaves_the_others_their_read(
    redis_url: str, redis_prefix: str
) -> None:
    client = create_redis(redis_url)
    cache = ResponseCache(redis=client, prefix=redis_prefix)
    entry = make_entry(b'"e"')

    async def compute() -> Entry:
        return entry

    try:
        await cache.get_or_compute("t", "k", ["tag"], compute)
        lookups = [asyncio.create_task(cache.peek("t", "k", ["tag"])) for _ in range(3)]
        await asyncio.sleep(0)  # all three joined the read
        lookups[0].cancel()  # its client went away
        assert await asyncio.gather(*lookups[1:]) == [entry, entry]
        assert lookups[0].cancelled()
        assert await cache.peek("t", "k", ["tag"]) == entry  # and later ones are served
    finally:
        await cache.aclose()
        await client.aclose()


async def test_redis_failing_a_shared_read_sends_its_lookups_to_the_database(
    own_redis: OwnRedis, redis_prefix: str
) -> None:
    """Every lookup sharing a failed read reads through (none hangs, none is served from
    L1 without its generations); the failure is counted once per read.
    (A Redis of the test's own: the shared one must stay up for the tests beside it.)"""
    client = create_redis(own_redis.url)
    cache = ResponseCache(redis=client, prefix=redis_prefix)
    entry = make_entry(b'"e"')

    async def compute() -> Entry:
        return entry

    try:
        await cache.get_or_compute("t", "k", ["tag"], compute)
        own_redis.stop()
        results = await asyncio.gather(
            *(cache.get_or_compute("t", "k", ["tag"], compute) for _ in range(20))
        )
        assert {source for _entry, source in results} == {"bypass"}
        assert cache.stats.redis_errors == 1
        assert await cache.peek("t", "k", ["tag"]) is None  # Redis distrusted for a while
    finally:
        await cache.aclose()
        await client.aclose()
