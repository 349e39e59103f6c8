"""The cache's building blocks without HTTP: entry framing, single-flight, and the
"reader fills the cache with the old value after the writer invalidated" race (L1 only)."""

from __future__ import annotations

import asyncio

import pytest

from storefront.cache import Entry, ResponseCache, make_entry
from storefront.cache.singleflight import SingleFlight


def test_entry_round_trips_through_its_redis_framing() -> None:
    entry = make_entry(b'{"a":1}', {"next_cursor": "abc"})
    assert Entry.decode(entry.encode()) == entry
    plain = make_entry(b"[]")
    assert Entry.decode(plain.encode()) == plain
    assert Entry.decode(b"garbage!") is None
    assert Entry.decode(b"") is None


async def test_single_flight_shares_result_and_survives_leader_cancellation() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    leader = asyncio.create_task(flights.do("k", work))
    await asyncio.sleep(0)
    joiners = [asyncio.create_task(flights.do("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    leader.cancel()  # the first client went away: the others still get the answer
    release.set()
    assert [await j for j in joiners] == [(42, True)] * 5
    assert calls == 1
    assert not flights.in_flight("k")
    assert await flights.do("k", work) == (42, False)  # landed: a new flight
    assert calls == 2


async def test_single_flight_gives_the_error_to_every_caller() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise LookupError("nope")

    results = await asyncio.gather(
        *(flights.do("k", boom) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert not flights.in_flight("k")


async def reader_fills_old_value_after_invalidation(
    reader: ResponseCache, writer: ResponseCache, later: ResponseCache
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def old() -> Entry:
        started.set()  # generations read, the "query" is running
        await release.wait()
        return make_entry(b'"old"')

    async def new() -> Entry:
        return make_entry(b'"new"')

    task = asyncio.create_task(reader.get_or_compute("t", "k", ["tag"], old))
    await started.wait()
    await writer.invalidate(["tag"])  # the writer committed and invalidated meanwhile
    release.set()
    entry, source = await task
    assert (entry.body, source) == (b'"old"', "miss")  # the slow reader files its old value
    for cache in (reader, later):  # ...where no later lookup finds it
        entry, source = await cache.get_or_compute("t", "k", ["tag"], new)
        assert entry.body == b'"new"', source


async def test_late_fill_after_invalidation_is_unreachable_l1_only() -> None:
    cache = ResponseCache(redis=None, prefix="t:")
    await reader_fills_old_value_after_invalidation(cache, cache, cache)


async def test_disabled_cache_computes_every_time() -> None:
    cache = ResponseCache(redis=None, prefix="t:", enabled=False)
    calls = 0

    async def compute() -> Entry:
        nonlocal calls
        calls += 1
        return make_entry(b"1")

    for _ in range(3):
        assert (await cache.get_or_compute("t", "k", ["x"], compute))[1] == "off"
    assert calls == 3


@pytest.mark.parametrize("size", [1, 3])
async def test_l1_is_bounded_in_bytes(size: int) -> None:
    cache = ResponseCache(redis=None, prefix="t:", local_max_bytes=size * 1300)

    async def compute() -> Entry:
        return make_entry(b"x" * 1000)

    for n in range(10):
        await cache.get_or_compute("t", f"k{n}", ["x"], compute)
    assert len(cache._l1) == size
