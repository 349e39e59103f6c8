"""order lines carry their shop (contract): order_lines.shop_id NOT NULL

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

The contract step of decision 0155. It refuses to run (and changes nothing) while any order
line still has no shop: run ``storefront backfill order-lines-shop-id`` first. On PostgreSQL
NOT NULL is reached without holding ACCESS EXCLUSIVE for a scan: a CHECK added NOT VALID
(instant), validated in its own transaction (SHARE UPDATE EXCLUSIVE: reads and writes go
on), then SET NOT NULL, which uses the valid check instead of scanning, and the check is
dropped. The fill trigger of 0012 stays: writers of the previous release still rely on it.
"""

# squawk-exempt: ban-drop-constraint -- the temporary CHECK that let SET NOT NULL skip its
#   scan; the NOT NULL column holds the same guarantee from then on

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storefront.migration_ops import require_backfilled, set_timeouts

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_order_lines_shop_id_not_null"


def upgrade() -> None:
    set_timeouts()
    require_backfilled("order-lines-shop-id", "order_lines", "shop_id IS NULL")
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("order_lines", schema=None) as batch_op:
            batch_op.alter_column("shop_id", existing_type=sa.Uuid(), nullable=False)
        return
    op.execute(
        f"ALTER TABLE order_lines ADD CONSTRAINT {CHECK} CHECK (shop_id IS NOT NULL) NOT VALID"
    )
    with op.get_context().autocommit_block():
        # its own transaction: the scan takes SHARE UPDATE EXCLUSIVE only
        op.execute(f"ALTER TABLE order_lines VALIDATE CONSTRAINT {CHECK}")
    set_timeouts()  # the autocommit block ended the first transaction and its SET LOCALs
    op.execute("ALTER TABLE order_lines ALTER COLUMN shop_id SET NOT NULL")
    op.execute(f"ALTER TABLE order_lines DROP CONSTRAINT {CHECK}")


def downgrade() -> None:
    set_timeouts()
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.alter_column("shop_id", existing_type=sa.Uuid(), nullable=True)
