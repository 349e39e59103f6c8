"""The lost-write check, in the manner of Jepsen's: after a drill, every order the API
acknowledged (201) must be in the database exactly once, and every payment it acknowledged
(201, succeeded) must have left its order paid.

Each order the load attempts is unique by construction: within the drill's own shop, its
customer and its total (the quantities of two products priced 1 and 1,001 cents, taken from a
per-customer sequence) appear in no other attempted order. A stored order whose (customer,
total) repeats is therefore a duplicate write (one Idempotency-Key that produced two orders),
whatever the API answered; a stored order no attempt explains is unexpected. Attempts that
were never acknowledged (the client gave up) may be stored or not: both are correct, and the
report counts them as indeterminate.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAID_OR_LATER = frozenset({"paid", "fulfilled"})


@dataclass(frozen=True, slots=True)
class Intent:
    """An order the load tried to place (whether or not the API acknowledged it)."""

    key: str  # its Idempotency-Key
    customer_id: str
    total_cents: int


@dataclass(frozen=True, slots=True)
class Ack:
    """An order the API acknowledged with 201."""

    key: str
    order_id: str


@dataclass(frozen=True, slots=True)
class StoredOrder:
    order_id: str
    customer_id: str
    total_cents: int
    status: str


@dataclass(frozen=True, slots=True)
class WriteCheck:
    acknowledged: int
    lost: list[str]  # acknowledged order ids missing, or stored as another order
    duplicates: int  # stored orders beyond the first for one intent
    unexpected: int  # stored orders no intent explains
    indeterminate_stored: int  # never acknowledged, yet stored (allowed)
    payments_acknowledged: int
    payments_lost: list[str]  # orders whose acknowledged payment left them unpaid

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.duplicates
            and not self.unexpected
            and not (self.payments_lost)
        )


def check_writes(
    intents: Sequence[Intent],
    acks: Sequence[Ack],
    stored: Iterable[StoredOrder],
    paid_acks: Sequence[str] = (),
) -> WriteCheck:
    """``stored``: every order of the drill's shop, read back through the write address;
    ``paid_acks``: the order ids whose payment the API acknowledged."""
    by_key = {i.key: i for i in intents}
    rows = list(stored)
    by_id = {r.order_id: r for r in rows}
    per_intent = Counter((r.customer_id, r.total_cents) for r in rows)
    intent_of = {(i.customer_id, i.total_cents): i for i in intents}
    acked_keys = {a.key for a in acks}

    lost: list[str] = []
    for ack in acks:
        row = by_id.get(ack.order_id)
        intent = by_key.get(ack.key)
        if (
            row is None
            or intent is None
            or (row.customer_id, row.total_cents) != (intent.customer_id, intent.total_cents)
        ):
            lost.append(ack.order_id)
    duplicates = sum(count - 1 for count in per_intent.values() if count > 1)
    unexpected = sum(count for pair, count in per_intent.items() if pair not in intent_of)
    indeterminate = sum(
        1 for pair in per_intent if pair in intent_of and intent_of[pair].key not in acked_keys
    )
    payments_lost = [
        order_id
        for order_id in paid_acks
        if order_id not in by_id or by_id[order_id].status not in PAID_OR_LATER
    ]
    return WriteCheck(
        acknowledged=len(acks),
        lost=lost,
        duplicates=duplicates,
        unexpected=unexpected,
        indeterminate_stored=indeterminate,
        payments_acknowledged=len(paid_acks),
        payments_lost=payments_lost,
    )


async def stored_orders(database_url: str, shop_id: str) -> list[StoredOrder]:
    """Every order of the shop, from the database at ``database_url`` (the write address:
    after a failover, the new primary)."""
    import asyncpg  # type: ignore[import-untyped]

    url = database_url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgresql+psycopg://", "postgresql://"
    )
    conn = await asyncpg.connect(url, timeout=10)
    try:
        records = await conn.fetch(
            "select id, customer_id, total_cents, status from orders where shop_id = $1",
            uuid.UUID(shop_id),
        )
    finally:
        await conn.close()
    return [
        StoredOrder(str(r["id"]), str(r["customer_id"]), int(r["total_cents"]), str(r["status"]))
        for r in records
    ]
