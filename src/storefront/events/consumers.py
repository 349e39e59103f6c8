"""Event consumers: each handles an event at most once (its inbox), whatever the broker
redelivers; an event that cannot be decoded, or whose handling fails ``max_deliveries``
times, is a poison message: dead-lettered, counted and logged, never retried forever."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events.envelope import CloudEvent, Undecodable, decode
from storefront.events.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from storefront.events.models import InboxEntry
from storefront.infra.availability import dependency, unavailable_reason
from storefront.kit.db import dialect_insert, utcnow

logger = logging.getLogger("storefront.events")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one dot-separated word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] in {"*", k[0]}) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named consumer: its queue is ``<exchange>.<name>``, bound with ``binding``."""

    name: str
    binding: str  # a topic pattern over event types, e.g. "order.*"
    handle: Handler  # runs in the inbox's transaction; raising rolls both back
    description: str = ""

    def wants(self, event_type: str) -> bool:
        return topic_matches(self.binding, event_type)


class Outcome(StrEnum):
    handled = "handled"
    duplicate = "duplicate"  # seen before: acknowledged without effect
    retry = "retried"  # failed; delivered again later
    dead_letter = "dead_lettered"


async def consume_once(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer, event: CloudEvent
) -> bool:
    """Handle ``event`` unless this consumer already has (False then). The inbox row and the
    handler's writes commit together: a crash between them is impossible."""
    async with sessionmaker() as session, session.begin():
        insert = dialect_insert(session)
        seen = await session.scalar(
            insert(InboxEntry)
            .values(consumer=consumer.name, event_id=event.id, processed_at=utcnow())
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(InboxEntry.event_id)
        )
        if seen is None:
            return False
        await consumer.handle(session, event)
    return True


async def process(
    sessionmaker: async_sessionmaker[AsyncSession],
    consumer: Consumer,
    body: bytes,
    *,
    delivery: int,
    max_deliveries: int,
) -> Outcome:
    """Decode and handle one delivery (``delivery``: 1 for the first, 2 for a redelivery...)
    and say what the transport must do with the message."""
    try:
        event = decode(body)
    except Undecodable as exc:
        outcome, reason = Outcome.dead_letter, "undecodable"
        logger.error("consumer %s: poison message dead-lettered (%s)", consumer.name, exc)
    else:
        try:
            fresh = await consume_once(sessionmaker, consumer, event)
        except Undecodable as exc:  # the handler found it malformed: no retry can help
            logger.error(
                "consumer %s: poison event %s dead-lettered (%s)", consumer.name, event.id, exc
            )
            outcome, reason = Outcome.dead_letter, "undecodable"
        except Exception as exc:
            away = unavailable_reason(exc)
            if away is not None:
                # the database is away, not the event at fault: never a poison message
                dependency(away[0]).down(away[1])
                EVENTS_CONSUMED.labels(consumer=consumer.name, outcome=Outcome.retry).inc()
                return Outcome.retry
            if delivery < max_deliveries:
                logger.warning(
                    "consumer %s failed on event %s (%s), delivery %d of %d; retrying",
                    consumer.name,
                    event.id,
                    event.type,
                    delivery,
                    max_deliveries,
                    exc_info=True,
                )
                EVENTS_CONSUMED.labels(consumer=consumer.name, outcome=Outcome.retry).inc()
                return Outcome.retry
            logger.exception(
                "consumer %s failed on event %s (%s) %d times: dead-lettered",
                consumer.name,
                event.id,
                event.type,
                delivery,
            )
            outcome, reason = Outcome.dead_letter, "failing"
        else:
            outcome = Outcome.handled if fresh else Outcome.duplicate
            EVENTS_CONSUMED.labels(consumer=consumer.name, outcome=outcome).inc()
            return outcome
    EVENTS_CONSUMED.labels(consumer=consumer.name, outcome=outcome).inc()
    EVENTS_DEAD_LETTERED.labels(consumer=consumer.name, reason=reason).inc()
    return outcome
