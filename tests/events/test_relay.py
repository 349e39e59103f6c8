"""The relay on its own (no app, so no other relay), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events import CloudEvent, EventType, record
from storefront.events.outbox import EventRelay
from storefront.kit.db import utcnow
from tests.support.events import events_database, stored_events


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with events_database(database_url) as maker:
        yield maker


async def _record(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        return record(
            session,
            EventType.order_paid,
            subject="orders/x",
            data={"shop_id": str(uuid.uuid4()), "currency": "EUR", "amount_cents": 1},
        )


async def test_the_relay_keeps_the_recorded_order_across_a_failed_send(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sent: list[uuid.UUID] = []
    failures = [RuntimeError("broker refused")]

    async def deliver(event: CloudEvent) -> None:
        if failures:
            raise failures.pop()
        sent.append(event.id)

    relay = EventRelay(sessionmaker, deliver)
    first, second = await _record(sessionmaker), await _record(sessionmaker)
    assert await relay.relay_due(utcnow()) == 2  # both claimed; the first send failed
    assert sent == []
    rows = {row.id: row for row in await stored_events(sessionmaker)}
    assert rows[first].last_error == "RuntimeError: broker refused"
    assert rows[first].published_at is None

    third = await _record(sessionmaker)  # due at once, but behind the first one's retry
    assert await relay.relay_due(utcnow()) == 0
    assert sent == []

    later = utcnow() + timedelta(minutes=5)  # past every back-off
    while await relay.relay_due(later):
        pass
    assert sent == [first, second, third]
    assert all(row.published_at is not None for row in await stored_events(sessionmaker))
    assert await relay.backlog() == (0, 0.0)


async def test_a_relayed_event_is_not_sent_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sent: list[uuid.UUID] = []

    async def deliver(event: CloudEvent) -> None:
        sent.append(event.id)

    relay = EventRelay(sessionmaker, deliver)
    event_id = await _record(sessionmaker)
    assert await relay.relay_due(utcnow()) == 1
    assert await relay.relay_due(utcnow() + timedelta(days=1)) == 0
    assert sent == [event_id]


async def test_stopping_lets_the_delivery_under_way_finish_and_mark_its_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A stop mid-delivery used to cancel the pass: the event stayed leased and a delivery
    could land after the caller moved on (a test's tables emptied, then a projection row)."""
    entered, release = asyncio.Event(), asyncio.Event()
    delivered: list[uuid.UUID] = []

    async def deliver(event: CloudEvent) -> None:
        entered.set()
        await release.wait()
        delivered.append(event.id)

    relay = EventRelay(sessionmaker, deliver)
    event_id = await _record(sessionmaker)
    relay.start()
    await asyncio.wait_for(entered.wait(), timeout=30)
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the delivery under way
    release.set()
    await asyncio.wait_for(stopping, timeout=30)
    assert delivered == [event_id]
    (row,) = await stored_events(sessionmaker)
    assert row.published_at is not None
    assert row.next_attempt_at is None
