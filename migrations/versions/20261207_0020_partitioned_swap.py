"""the swap: orders, order lines and payments become their partitioned copies

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

Step 4 of docs/scaling.md (decision 0151), PostgreSQL only. First the check: each copy must
hold, shop by shop, as many rows as its live table (one statement per pair: one snapshot, and
the mirror writes a row and its copy in one transaction). When they differ the revision
refuses and names the backfills, unless the three live tables hold at most
``INLINE_COPY_LIMIT`` rows together (a fresh or small database): then it copies the missing
rows itself, in this transaction, and checks again.

Then the swap, in one transaction under ``lock_timeout``: ACCESS EXCLUSIVE on the six tables
(waited for at most 5 s, then the revision fails and changes nothing: run it again), the
mirror triggers dropped, every live table renamed ``<table>_old`` (its primary key and
indexes ``<name>_old``), every copy renamed to the live name (its primary key and indexes
to the models' names), and mirror triggers created on the new tables writing into the
``_old`` ones. Catalogue changes only: no row is read or written under the locks. The
previous release runs on this schema unchanged (same names, same columns); rolled back to,
it finds every row in ``orders`` either way, and a downgrade finds the ``_old`` tables
complete. The contract (a release later) drops the triggers and the ``_old`` tables.
"""

# squawk-exempt: renaming-table, renaming-object, ban-drop-function -- the swap itself: each live name is taken
#   over in the same transaction by a table (index, key) of the same columns and rows, so no
#   client, old or new, sees a name missing; only the _old names are new, and no code uses them;
#   the mirror function dropped is replaced by one writing the other way (only triggers call it)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from storefront import partitioning
from storefront.migration_ops import set_timeouts
from storefront.partitioning import COPY, OLD, drop_mirror_sql, mirror_sql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# this revision's snapshot of the three tables (as 0019 made the copies)
COLUMNS = {
    "orders": (
        "id", "shop_id", "customer_id", "status", "currency", "total_cents", "version",
        "created_at", "updated_at", "shipping_address_sealed", "confirmation_sent_at",
        "expires_at",
    ),
    "order_lines": (
        "id", "order_id", "position", "product_id", "sku", "name", "unit_price_cents",
        "quantity", "line_total_cents", "shop_id",
    ),
    "payments": (
        "id", "shop_id", "order_id", "status", "amount_cents", "currency", "payment_method",
        "provider_reference", "failure_code", "claimed_until", "settled_at", "created_at",
        "updated_at",
    ),
}  # fmt: skip
INDEXES = {
    "orders": (
        "ix_orders_customer_id", "ix_orders_pending_expires_at",
        "ix_orders_shop_id_customer_id_id", "ix_orders_shop_id_id", "ix_orders_shop_id_status_id",
    ),
    "order_lines": ("ix_order_lines_order_id", "ix_order_lines_product_id"),
    "payments": (
        "ix_payments_order_id", "ix_payments_processing_updated_at",
        "ix_payments_shop_id_order_id_id", "uq_payments_shop_id_order_id_live",
        "uq_payments_shop_id_provider_reference", "ix_payments_provider_reference",
    ),
}  # fmt: skip
# the check reads the six tables whole (before any lock is taken): longer than 60 s may be
# needed on a big database
CHECK_TIMEOUT = "30min"


def _rename(table: str, to: str, *, suffix_from: str, suffix_to: str) -> list[str]:
    """``table`` renamed ``to``, its primary key and indexes from ``<name><suffix_from>`` to
    ``<name><suffix_to>``."""
    base = table.removesuffix(suffix_from) if suffix_from else table
    statements = [
        f"ALTER TABLE {table} RENAME CONSTRAINT pk_{base}{suffix_from} TO pk_{base}{suffix_to}"
    ]
    statements += [
        f"ALTER INDEX {name}{suffix_from} RENAME TO {name}{suffix_to}" for name in INDEXES[base]
    ]
    statements.append(f"ALTER TABLE {table} RENAME TO {to}")
    return statements


def _swap(live_suffix: str, copy_suffix: str) -> list[str]:
    """The tables named ``<t><copy_suffix>`` take the live names; the live ones become
    ``<t><live_suffix>``; the mirror moves from (live -> copy) to (new live -> old)."""
    tables = tuple(COLUMNS)
    statements = [
        "LOCK TABLE "
        + ", ".join((*tables, *(f"{t}{copy_suffix}" for t in tables)))
        + " IN ACCESS EXCLUSIVE MODE"
    ]
    for table in reversed(tables):
        statements += drop_mirror_sql(table, f"{table}{copy_suffix}")
    for table in tables:
        statements += _rename(table, f"{table}{live_suffix}", suffix_from="", suffix_to=live_suffix)
        statements += _rename(f"{table}{copy_suffix}", table, suffix_from=copy_suffix, suffix_to="")
    orders = ("orders", f"orders{live_suffix}", COLUMNS["orders"])
    for table, columns in COLUMNS.items():
        parent = None if table == "orders" else orders
        statements += mirror_sql(table, f"{table}{live_suffix}", columns, parent=parent)
    return statements


def _check_or_copy() -> None:
    pairs = [(t, f"{t}{COPY}") for t in COLUMNS]
    if context.is_offline_mode():
        op.execute(
            "-- requires: every copy holds its table's rows, shop by shop (the backfills "
            f"{', '.join(partitioning.BACKFILL_NAMES.values())} finished), or at most "
            f"{partitioning.INLINE_COPY_LIMIT} rows in all (copied here)"
        )
        return
    conn = op.get_bind()
    op.execute(f"SET LOCAL statement_timeout = '{CHECK_TIMEOUT}'")
    try:
        partitioning.check_copies(conn, pairs)
    except partitioning.CopyIncomplete:
        rows = sum(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in COLUMNS
        )
        if rows > partitioning.INLINE_COPY_LIMIT:
            raise
        for table, columns in COLUMNS.items():  # orders first: the copies' foreign keys
            op.execute(partitioning.copy_rows_sql(table, f"{table}{COPY}", columns))
        partitioning.check_copies(conn, pairs)  # rows in a copy its table lacks: refused
    set_timeouts()


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        return
    _check_or_copy()
    for statement in _swap(OLD, COPY):
        op.execute(statement)


def downgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        return
    # the mirror kept the _old tables complete: they take the live names back, and the
    # partitioned tables are the copies again (mirrored into, as 0019 left them)
    for statement in _swap(COPY, OLD):
        op.execute(statement)
