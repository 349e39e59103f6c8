"""Invalidation scheduled on the session: it runs once the transaction has committed.

The caller passes the process's cache (``resources.cache``); without one (None) it is a
no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.db import after_commit

if TYPE_CHECKING:
    from storefront.cache.response_cache import ResponseCache


def invalidate_after_commit(
    session: AsyncSession, cache: ResponseCache | None, tags: Iterable[str]
) -> None:
    if cache is None:
        return
    frozen = frozenset(tags)

    async def invalidate() -> None:
        await cache.invalidate(frozen)

    after_commit(session, invalidate)
