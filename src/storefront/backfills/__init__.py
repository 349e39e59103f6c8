"""Registered data migrations, run by ``storefront backfill NAME`` (docs/migrations.md).

A backfill is the middle step of expand -> backfill -> contract: the expand revision adds
what the new code writes, the backfill fills it in for the rows already there, in batches of
short transactions while the service runs, and the contract revision (which refuses to run
before the backfill has finished) tightens the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from storefront.backfills.models import BackfillProgress
from storefront.backfills.runner import (
    Backfill,
    Progress,
    Report,
    pending_rows,
    progress_of,
    replica_lag,
    run_backfill,
)

_lines = sa.table(
    "order_lines",
    sa.column("id", sa.Uuid()),
    sa.column("order_id", sa.Uuid()),
    sa.column("shop_id", sa.Uuid()),
)
_orders = sa.table("orders", sa.column("id", sa.Uuid()), sa.column("shop_id", sa.Uuid()))


def _fill_line_shops(keys: Sequence[Any]) -> sa.Update:
    shop_of_order = (
        sa.select(_orders.c.shop_id).where(_orders.c.id == _lines.c.order_id).scalar_subquery()
    )
    return (
        sa.update(_lines)
        .where(_lines.c.id.in_(keys), _lines.c.shop_id.is_(None))
        .values(shop_id=shop_of_order)
    )


ORDER_LINES_SHOP_ID = Backfill(
    name="order-lines-shop-id",
    description="order lines get their order's shop_id (decision 0155; contract: 0013)",
    table=_lines,
    key=_lines.c.id,
    pending=_lines.c.shop_id.is_(None),
    change=_fill_line_shops,
    parse_key=uuid.UUID,
    contract_revision="0013",
)

BACKFILLS: dict[str, Backfill] = {b.name: b for b in (ORDER_LINES_SHOP_ID,)}

__all__ = [
    "BACKFILLS",
    "Backfill",
    "BackfillProgress",
    "Progress",
    "Report",
    "pending_rows",
    "progress_of",
    "replica_lag",
    "run_backfill",
]
