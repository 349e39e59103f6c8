"""Helpers for the domain-event tests: the stored stream, the projection, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events import DomainEvent, InboxEntry
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.sales.models import SalesDay

T = TypeVar("T")
DEADLINE_SECONDS = 60.0  # generous: a loaded 2-core machine


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    within: float = DEADLINE_SECONDS,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``accept`` takes its value; fail with the last value after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def stored_events(sessionmaker: async_sessionmaker[AsyncSession]) -> list[DomainEvent]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(DomainEvent).order_by(DomainEvent.id))).all())


async def inbox(sessionmaker: async_sessionmaker[AsyncSession], consumer: str) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(InboxEntry.event_id).where(InboxEntry.consumer == consumer)
        )
        return {str(event_id) for event_id in rows}


async def projection(sessionmaker: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    """Every row of the sales projection, as plain values in a stable order."""
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(SalesDay).order_by(SalesDay.shop_id, SalesDay.day, SalesDay.currency)
            )
        ).all()
    columns = [c.key for c in SalesDay.__table__.columns]
    return [{name: getattr(row, name) for name in columns} for row in rows]


async def relayed_and_consumed(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: str, binding_prefix: str
) -> bool:
    """Every stored event is relayed and every one the consumer wants is in its inbox."""
    events = await stored_events(sessionmaker)
    if any(event.published_at is None for event in events):
        return False
    wanted = {str(e.id) for e in events if e.type.startswith(binding_prefix)}
    return wanted <= await inbox(sessionmaker, consumer)


@asynccontextmanager
async def events_database(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The test worker's migrated database without an app (so no relay of the app's takes
    the test's events), left empty of events afterwards."""
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    maker = create_sessionmaker(engine)
    try:
        yield maker
    finally:
        async with maker() as session, session.begin():
            for table in (SalesDay, InboxEntry, DomainEvent):
                await session.execute(delete(table))
        await engine.dispose()
