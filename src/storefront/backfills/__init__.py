"""Registered data migrations, run by ``storefront backfill NAME`` (docs/migrations.md).

A backfill is the middle step of expand -> backfill -> contract: the expand revision adds
what the new code writes, the backfill fills it in for the rows already there, in batches of
short transactions while the service runs, and the contract revision (which refuses to run
before the backfill has finished) tightens the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

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


# Step 3 of docs/scaling.md (decision 0151): the rows written before revision 0019's mirror
# triggers, copied into the partitioned copies; the swap (0020) waits for them.
def _table(name: str, model_table: sa.Table) -> sa.TableClause:
    return sa.table(name, *(sa.column(c.name, c.type) for c in model_table.columns))


def _shop_key(key: tuple[uuid.UUID, uuid.UUID]) -> str:
    return f"{key[0].hex}{key[1].hex}"  # 64 characters: the position column's width


def _parse_shop_key(position: str) -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.UUID(position[:32]), uuid.UUID(position[32:])


def _copy_statement(
    live: sa.TableClause, copy: sa.TableClause, where: sa.ColumnElement[bool]
) -> postgresql.Insert:
    """Insert the live rows matching ``where`` that the copy has not got. ``FOR SHARE``: an
    update or delete of one of them in flight is waited for (and then mirrored by its own
    trigger onto the row copied here), never undone by an older version copied after it."""
    names = [c.name for c in live.columns]
    rows = sa.select(*live.columns).where(where).with_for_update(read=True)
    return postgresql.insert(copy).from_select(names, rows).on_conflict_do_nothing()


def _copy_backfill(table: str, model_table: sa.Table, parent: sa.Table | None) -> Backfill:
    from storefront.partitioning import BACKFILL_NAMES, COPY, check_copies

    live, copy = _table(table, model_table), _table(f"{table}{COPY}", model_table)
    key = (live.c.shop_id, live.c.id)

    def change(keys: Sequence[Any]) -> sa.Executable:
        stmt = _copy_statement(live, copy, sa.tuple_(*key).in_(keys))
        if parent is None:
            return stmt
        # the lines' (payments') orders first, if the orders' backfill has not copied them
        # yet: the copy's composite foreign key checks at the end of the statement
        orders = _table(parent.name, parent)
        orders_copy = _table(f"{parent.name}{COPY}", parent)
        theirs = sa.select(live.c.shop_id, live.c.order_id).where(sa.tuple_(*key).in_(keys))
        parents = _copy_statement(
            orders, orders_copy, sa.tuple_(orders.c.shop_id, orders.c.id).in_(theirs)
        ).cte(f"{parent.name}_first")
        return stmt.add_cte(parents)

    copied = sa.exists().where(copy.c.shop_id == live.c.shop_id, copy.c.id == live.c.id)
    return Backfill(
        name=BACKFILL_NAMES[table],
        description=f"copy {table}'s rows into {table}{COPY}, partitioned by shop "
        "(decision 0151; the swap: 0020)",
        table=live,
        key=key,
        pending=~copied,
        change=change,
        parse_key=_parse_shop_key,
        format_key=_shop_key,
        contract_revision="0020",
        # the shops whose row counts differ between the table and its copy (the swap checks
        # the same before it renames anything)
        verify=lambda conn: check_copies(conn, [(table, f"{table}{COPY}")]),
    )


def _partition_copies() -> tuple[Backfill, ...]:
    from storefront.orders.models import Order, OrderLine
    from storefront.payments.models import Payment

    orders, lines = cast(sa.Table, Order.__table__), cast(sa.Table, OrderLine.__table__)
    payments = cast(sa.Table, Payment.__table__)
    return (
        _copy_backfill("orders", orders, None),
        _copy_backfill("order_lines", lines, orders),
        _copy_backfill("payments", payments, orders),
    )


BACKFILLS: dict[str, Backfill] = {b.name: b for b in (ORDER_LINES_SHOP_ID, *_partition_copies())}

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
