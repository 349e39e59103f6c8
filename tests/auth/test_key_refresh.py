"""Key refresh inside a request must not wait for the request's own write lock (SQLite)."""

from __future__ import annotations

import anyio
from sqlalchemy import text

from storefront.resources import Resources


async def test_key_reload_while_a_write_transaction_is_open(resources: Resources) -> None:
    keys = resources.security.keys
    await keys.load()
    async with resources.sessionmaker() as session, session.begin():
        # the request's transaction holds the write lock (BEGIN IMMEDIATE on SQLite)
        await session.execute(text("SELECT 1"))
        with anyio.fail_after(5):
            await keys.load()  # the periodic refresh a sign-in triggers after 60 s
            assert await keys.reload_for_unknown_kid()
    assert len(keys.ring) >= 1
