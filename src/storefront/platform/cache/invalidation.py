"""Invalidation scheduled on the session: it runs once the transaction has committed.

The cache reaches the session through ``Session.info`` (set by the app's sessionmaker), so
a domain service invalidates without knowing where the cache lives. Without a cache (the
CLI, seeding) it is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.platform.db import after_commit

if TYPE_CHECKING:
    from storefront.platform.cache.response_cache import ResponseCache

CACHE_INFO_KEY = "storefront.response_cache"


def invalidate_after_commit(session: AsyncSession, tags: Iterable[str]) -> None:
    cache: ResponseCache | None = session.info.get(CACHE_INFO_KEY)
    if cache is None:
        return
    frozen = frozenset(tags)

    async def invalidate() -> None:
        await cache.invalidate(frozen)

    after_commit(session, invalidate)
