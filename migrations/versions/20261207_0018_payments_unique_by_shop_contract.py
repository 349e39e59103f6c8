"""payments' unique indexes by shop (contract): the indexes without shop_id dropped

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

``uq_payments_order_id_live`` and ``uq_payments_provider_reference`` are dropped
CONCURRENTLY: 0017's ``(shop_id, ...)`` indexes hold the same guarantees (one live payment per
order; a PaymentIntent id once per shop, and the provider makes them unique anyway), and the
webhook's lookup by PaymentIntent id uses ``ix_payments_provider_reference``. No code names
the dropped indexes (a concurrent second attempt is told apart by IntegrityError, whichever
index refuses it). The downgrade builds them again CONCURRENTLY.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_WHERE = "status IN ('processing', 'succeeded')"
# name -> (columns, where), as 0010 made them
OLD = {
    "uq_payments_order_id_live": (("order_id",), LIVE_WHERE),
    "uq_payments_provider_reference": (("provider_reference",), None),
}
BUILD_TIMEOUT = "30min"  # the downgrade's concurrent builds read the whole table twice


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for name in OLD:
            op.drop_index(name, table_name="payments")
        return
    with op.get_context().autocommit_block():
        for name in OLD:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    set_timeouts()


def downgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for name, (columns, where) in OLD.items():
            op.create_index(
                name,
                "payments",
                list(columns),
                unique=True,
                sqlite_where=None if where is None else sa.text(where),
            )
        return
    with op.get_context().autocommit_block():
        op.execute(f"SET statement_timeout = '{BUILD_TIMEOUT}'")
        for name, (columns, where) in OLD.items():
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} "
                f"ON payments ({', '.join(columns)})" + ("" if where is None else f" WHERE {where}")
            )
        op.execute("RESET statement_timeout")
    set_timeouts()
