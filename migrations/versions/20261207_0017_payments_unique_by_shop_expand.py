"""payments' unique indexes by shop (expand): (shop_id, order_id) live, (shop_id, reference)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

A table partitioned by shop (step 3 of docs/scaling.md) accepts a unique index only if it
includes ``shop_id``; two of ``payments``' did not. Built CONCURRENTLY beside them here:
- ``uq_payments_shop_id_order_id_live`` ``(shop_id, order_id) WHERE status IN (processing,
  succeeded)``: the same guarantee as ``uq_payments_order_id_live`` (a payment's order is in
  the payment's shop since 0015's composite key), so it cannot fail on existing rows;
- ``uq_payments_shop_id_provider_reference`` ``(shop_id, provider_reference)``: implied by
  the global one it replaces;
- ``ix_payments_provider_reference`` (not unique): the provider webhook's lookup by
  PaymentIntent id, which names no shop (a charge event carries only the PaymentIntent id).
The old indexes go in 0018 (the contract). Both shapes refuse the same rows: old and new code
see one behaviour. SQLite: plain indexes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_WHERE = "status IN ('processing', 'succeeded')"
# name -> (unique, columns, where)
INDEXES = {
    "uq_payments_shop_id_order_id_live": (True, ("shop_id", "order_id"), LIVE_WHERE),
    "uq_payments_shop_id_provider_reference": (True, ("shop_id", "provider_reference"), None),
    "ix_payments_provider_reference": (False, ("provider_reference",), None),
}
# a concurrent build reads the whole table twice: longer than the default 60 s may be needed
BUILD_TIMEOUT = "30min"


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for name, (unique, columns, where) in INDEXES.items():
            op.create_index(
                name,
                "payments",
                list(columns),
                unique=unique,
                sqlite_where=None if where is None else sa.text(where),
            )
        return
    with op.get_context().autocommit_block():
        op.execute(f"SET statement_timeout = '{BUILD_TIMEOUT}'")
        for name, (unique, columns, where) in INDEXES.items():
            # IF NOT EXISTS: an interrupted build leaves an INVALID index; drop it, run again
            op.execute(
                f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY IF NOT EXISTS {name} "
                f"ON payments ({', '.join(columns)})" + ("" if where is None else f" WHERE {where}")
            )
        op.execute("RESET statement_timeout")
    set_timeouts()


def downgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for name in INDEXES:
            op.drop_index(name, table_name="payments")
        return
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    set_timeouts()
