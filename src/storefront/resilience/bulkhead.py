"""Bounded concurrent calls per dependency (per target where the dependency has several):
a slot or, after a bounded wait, :class:`BulkheadFull`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from storefront.resilience import metrics
from storefront.resilience.errors import BulkheadFull


class Bulkhead:
    __slots__ = ("_semaphore", "dependency", "limit", "max_wait", "users")

    def __init__(self, dependency: str, *, limit: int, max_wait: float) -> None:
        self.dependency = dependency
        self.limit = limit
        self.max_wait = max_wait
        self._semaphore = asyncio.Semaphore(limit)
        self.users = 0  # holding or waiting for a slot

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.users += 1
        try:
            if self._semaphore.locked() and self.max_wait <= 0:
                raise BulkheadFull(self.dependency)
            try:
                async with asyncio.timeout(self.max_wait):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise BulkheadFull(self.dependency) from None
            gauge = metrics.in_flight(self.dependency)
            gauge.inc()
            try:
                yield
            finally:
                gauge.dec()
                self._semaphore.release()
        finally:
            self.users -= 1


class Bulkheads:
    """One :class:`Bulkhead` per breaker name; idle ones are dropped (a dependency with a
    breaker per target would otherwise keep one per target it ever called)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Bulkhead] = {}

    @asynccontextmanager
    async def slot(
        self, name: str, dependency: str, *, limit: int, max_wait: float
    ) -> AsyncIterator[None]:
        bulkhead = self._by_name.get(name)
        if bulkhead is None:
            bulkhead = self._by_name[name] = Bulkhead(dependency, limit=limit, max_wait=max_wait)
        try:
            async with bulkhead.slot():
                yield
        finally:
            if bulkhead.users == 0 and self._by_name.get(name) is bulkhead:
                del self._by_name[name]
