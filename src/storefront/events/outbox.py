"""Recording domain events in the caller's transaction, and relaying them afterwards.

:func:`record` adds a ``domain_events`` row to the session: it exists exactly when the change
it reports committed. The :class:`EventRelay` of each process (the API's lifespan, the
worker) sends rows not yet relayed to the transport (RabbitMQ, or in-process delivery on the
embedded mode), woken right after a commit that recorded one and otherwise polling; a row is
marked relayed once the broker confirmed it. A failed send is retried with back-off, so an
event recorded while the broker was away goes out once it is back. Delivery is at least once;
consumers deduplicate by event id (their inbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

import anyio
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events.envelope import DEFAULT_SOURCE, CloudEvent, EventType
from storefront.events.metrics import EVENTS_BACKLOG, EVENTS_OLDEST_AGE
from storefront.events.models import MAX_ERROR_LENGTH, DomainEvent
from storefront.infra.availability import Backoff, report_failure, spawn
from storefront.kit.db import after_commit, new_id, snapshot_session, utcnow

logger = logging.getLogger("storefront.events")

Deliver = Callable[[CloudEvent], Awaitable[None]]

# the relays running in this process: a commit that recorded an event wakes them
_relays: weakref.WeakSet[EventRelay] = weakref.WeakSet()


async def _wake_relays() -> None:
    for relay in list(_relays):
        relay.wake()


def record(
    session: AsyncSession,
    type: EventType | str,
    *,
    subject: str,
    data: Mapping[str, Any],
    shop_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Record one domain event in ``session``'s transaction; it is relayed once that commits
    and never if it rolls back. Returns the event's id.

    ``type``: one of :class:`EventType` (``"order.paid"``...); ``subject``: what changed
    (``"orders/<id>"``); ``data``: JSON-serializable, no personal data; ``shop_id``: the
    tenant, when there is one."""
    event_type = EventType(type)  # a ValueError for an undeclared type, before the commit
    payload = json.loads(json.dumps(dict(data)))  # a TypeError here, not at relay time
    now = utcnow()
    event_id = new_id()
    session.add(
        DomainEvent(
            id=event_id,
            type=event_type.value,
            source=DEFAULT_SOURCE,
            subject=subject,
            shop_id=shop_id,
            occurred_at=now,
            data=payload,
            published_at=None,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
        )
    )
    after_commit(session, _wake_relays)
    return event_id


def _due(row: DomainEvent, now: datetime) -> bool:
    return row.next_attempt_at is not None and row.next_attempt_at <= now


def to_cloudevent(row: DomainEvent) -> CloudEvent:
    return CloudEvent(
        id=row.id,
        source=row.source,
        type=row.type,
        time=row.occurred_at,
        subject=row.subject,
        data=row.data,
    )


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    poll_seconds: float = 1.0
    batch_size: int = 100
    lease_seconds: float = 30.0  # a claimed row is nobody else's for this long
    send_timeout_seconds: float = 5.0
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    measure_seconds: float = 15.0  # how often the backlog gauges are sampled; 0: never


class EventRelay:
    """Sends recorded events to ``deliver`` in the order they were recorded."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliver: Deliver,
        config: RelayConfig | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self._deliver = deliver
        self.config = config or RelayConfig()
        self.relayed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            _relays.add(self)
            self._task = spawn(self._run(), name="storefront-event-relay")

    async def stop(self) -> None:
        """Let the pass under way finish (the events it claimed are delivered and marked,
        not left leased for ``lease_seconds``, and no delivery lands after the caller moves
        on), then stop; a pass still sending after its deadline is cancelled."""
        _relays.discard(self)
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        grace = self.config.send_timeout_seconds * 2 + 5.0
        with anyio.move_on_after(grace, shield=True):
            await asyncio.wait({task})
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(self.config.poll_seconds, max(self.config.max_delay_seconds, 1.0))
        loop = asyncio.get_running_loop()
        next_measure = 0.0
        while not self._stopping:
            delay = self.config.poll_seconds
            try:
                while await self.relay_due() >= self.config.batch_size and not self._stopping:
                    pass
                if self.config.measure_seconds > 0 and loop.time() >= next_measure:
                    next_measure = loop.time() + self.config.measure_seconds
                    rows, age = await self.backlog()
                    EVENTS_BACKLOG.set(rows)
                    EVENTS_OLDEST_AGE.set(age)
            except Exception as exc:
                if not report_failure(exc) and backoff.failures == 0:
                    logger.exception("event relay pass failed; retrying with backoff")
                delay = backoff.next_delay()
            else:
                backoff.reset()
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake.clear()

    def backoff(self, attempts: int) -> timedelta:
        """``base * 2^(attempts-1)``, capped, half fixed and half random."""
        cfg = self.config
        delay = min(cfg.base_delay_seconds * 2.0 ** max(attempts - 1, 0), cfg.max_delay_seconds)
        jittered = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  # nosec B311
        return timedelta(seconds=max(jittered, 0.05))

    async def relay_due(self, now: datetime | None = None) -> int:
        """One pass: claim up to ``batch_size`` due events, oldest first and stopping at the
        first that is not due, send them in order, record the outcome. Returns how many were
        claimed."""
        now = now or utcnow()
        async with snapshot_session(self.sessionmaker) as session:
            # an idle relay only reads (it never takes SQLite's write lock)
            due = await session.scalar(
                select(DomainEvent.id).where(DomainEvent.next_attempt_at <= now).limit(1)
            )
        if due is None:
            return 0
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                select(DomainEvent)
                .where(DomainEvent.next_attempt_at.is_not(None))
                .order_by(DomainEvent.id)
                .limit(self.config.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            pending = list((await session.scalars(stmt)).all())
            # in recorded order: an older event waiting for its retry (or leased by another
            # relay) holds back the newer ones, so consumers see them in order
            rows = list(takewhile(lambda row: _due(row, now), pending))
            if not rows:
                return 0
            lease = now + timedelta(seconds=self.config.lease_seconds)
            await session.execute(
                update(DomainEvent)
                .where(DomainEvent.id.in_([row.id for row in rows]))
                .values(attempts=DomainEvent.attempts + 1, next_attempt_at=lease)
            )
            events = [(to_cloudevent(row), row.attempts + 1) for row in rows]
        sent: list[uuid.UUID] = []
        error: str | None = None
        for event, _ in events:
            try:
                with anyio.fail_after(self.config.send_timeout_seconds):
                    await self._deliver(event)
            except Exception as exc:  # noqa: BLE001 - recorded on the row, retried later
                error = describe_error(exc)
                break  # keep the order: what follows waits for this one
            sent.append(event.id)
        unsent = [(event.id, attempts) for event, attempts in events if event.id not in sent]
        async with self.sessionmaker() as session, session.begin():
            done = utcnow()
            if sent:
                await session.execute(
                    update(DomainEvent)
                    .where(DomainEvent.id.in_(sent))
                    .values(published_at=done, next_attempt_at=None, last_error=None)
                )
            for event_id, attempts in unsent:
                await session.execute(
                    update(DomainEvent)
                    .where(DomainEvent.id == event_id)
                    .values(next_attempt_at=done + self.backoff(attempts), last_error=error)
                )
        self.relayed += len(sent)
        if unsent:
            logger.warning(
                "event relay could not send %d event(s), retrying later: %s", len(unsent), error
            )
        return len(events)

    async def backlog(self) -> tuple[int, float]:
        """Events recorded and not relayed yet, and how long the oldest has waited."""
        waiting = DomainEvent.next_attempt_at.is_not(None)
        async with snapshot_session(self.sessionmaker) as session:
            count = await session.scalar(
                select(func.count()).select_from(DomainEvent).where(waiting)
            )
            oldest = await session.scalar(select(func.min(DomainEvent.occurred_at)).where(waiting))
        age = max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        return int(count or 0), age
