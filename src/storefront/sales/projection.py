"""The per-shop sales projection, built from domain events only.

Each order event adds to its shop's row for the event's day (UTC) and the order's currency:
``order.placed`` counts an order and its total, ``order.paid`` the revenue (the amount the
provider confirmed), ``order.refunded`` a refund and its amount, ``order.cancelled`` and
``order.expired`` their counts. The consumer's inbox makes each event count once; replaying
the stored stream (:func:`rebuild`) produces the same rows as the live consumer.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events import CloudEvent, Consumer, DomainEvent, EventType, InboxEntry
from storefront.events.envelope import Undecodable
from storefront.events.outbox import to_cloudevent
from storefront.kit.db import dialect_insert, lock_key
from storefront.sales.models import SalesDay

logger = logging.getLogger("storefront.sales")

CONSUMER_NAME = "sales-projection"
REPLAY_BATCH = 500

_COUNTERS: dict[str, tuple[str, str | None]] = {
    # event type: (the count it adds one to, the amount column it adds the cents to)
    EventType.order_placed: ("orders_placed", "placed_cents"),
    EventType.order_paid: ("orders_paid", "revenue_cents"),
    EventType.order_refunded: ("refunds", "refunded_cents"),
    EventType.order_cancelled: ("orders_cancelled", None),
    EventType.order_expired: ("orders_expired", None),
}


class MalformedEvent(Undecodable):
    """An order event without what the projection needs: a poison message, dead-lettered at
    once (no delivery can fix it)."""


def _amount(event: CloudEvent) -> int:
    data: dict[str, Any] = event.data
    value = data.get("amount_cents", data.get("total_cents"))
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvent(f"{event.type} {event.id}: no amount_cents or total_cents")
    return value


async def apply(session: AsyncSession, event: CloudEvent) -> None:
    """Add one event to the projection (in the caller's transaction)."""
    counters = _COUNTERS.get(event.type)
    if counters is None:
        return
    count_column, amount_column = counters
    data = event.data
    try:
        shop_id = uuid.UUID(str(data["shop_id"]))
        currency = str(data["currency"])
    except (KeyError, ValueError) as exc:
        raise MalformedEvent(f"{event.type} {event.id}: {exc!r}") from exc
    if len(currency) != 3:
        raise MalformedEvent(f"{event.type} {event.id}: currency {currency!r}")
    values: dict[str, int] = {count_column: 1}
    if amount_column is not None:
        values[amount_column] = _amount(event)
    insert = dialect_insert(session)
    stmt = insert(SalesDay).values(
        shop_id=shop_id,
        day=event.time.date(),
        currency=currency,
        **{name: 0 for name in _ALL_COLUMNS if name not in values},
        **values,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["shop_id", "day", "currency"],
            set_={name: getattr(SalesDay, name) + amount for name, amount in values.items()},
        )
    )


_ALL_COLUMNS = (
    "orders_placed",
    "placed_cents",
    "orders_paid",
    "revenue_cents",
    "refunds",
    "refunded_cents",
    "orders_cancelled",
    "orders_expired",
)

SALES_PROJECTION = Consumer(
    name=CONSUMER_NAME,
    binding="order.*",
    handle=apply,
    description="Per-shop sales per day and currency (GET /shops/{shop_id}/sales).",
)


async def rebuild(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Throw the projection and its inbox away and replay the whole stored event stream
    through the consumer, in one transaction (readers see the old rows until it commits; a
    live delivery meanwhile waits on the inbox row and then finds it). Returns how many
    events were replayed."""
    replayed = 0
    async with sessionmaker() as session, session.begin():
        await lock_key(session, f"projection:{CONSUMER_NAME}")
        await session.execute(delete(SalesDay))
        await session.execute(delete(InboxEntry).where(InboxEntry.consumer == CONSUMER_NAME))
        after: uuid.UUID | None = None
        insert = dialect_insert(session)
        while True:
            stmt = select(DomainEvent).order_by(DomainEvent.id).limit(REPLAY_BATCH)
            if after is not None:
                stmt = stmt.where(DomainEvent.id > after)
            rows = list((await session.scalars(stmt)).all())
            if not rows:
                return replayed
            for row in rows:
                after = row.id
                if not SALES_PROJECTION.wants(row.type):
                    continue
                event = to_cloudevent(row)
                try:
                    await apply(session, event)
                except MalformedEvent as exc:
                    # the live consumer dead-lettered it: it counted nothing there either
                    logger.warning("replay: %s skipped", exc)
                    continue
                await session.execute(
                    insert(InboxEntry)
                    .values(consumer=CONSUMER_NAME, event_id=event.id)
                    .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
                )
                replayed += 1
            session.expunge_all()
