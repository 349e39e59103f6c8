"""order lines carry their shop (expand): nullable order_lines.shop_id, backfill progress

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

The expand step of decision 0155: every tenant-owned row carries ``shop_id`` (the key the
schema is partitioned and distributed by, issue 17), and order lines did not. The column is
added nullable (a catalogue-only change: no rewrite, no scan). The code from this release on
writes it; on PostgreSQL a BEFORE INSERT trigger fills it from the order for writers that do
not (the previous release, still serving during a rolling deploy), so the contract (0013)
cannot break them. Existing rows are filled by ``storefront backfill order-lines-shop-id``,
which records its progress in ``backfill_progress`` (created here).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILL_SHOP = """
CREATE OR REPLACE FUNCTION order_lines_fill_shop_id() RETURNS trigger AS $$
BEGIN
    IF NEW.shop_id IS NULL THEN
        SELECT shop_id INTO NEW.shop_id FROM orders WHERE id = NEW.order_id;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    set_timeouts()
    op.create_table(
        "backfill_progress",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.String(length=64), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_backfill_progress")),
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shop_id", sa.Uuid(), nullable=True))
    if _postgres():
        op.execute(FILL_SHOP)
        op.execute(
            "CREATE TRIGGER order_lines_fill_shop_id BEFORE INSERT ON order_lines "
            "FOR EACH ROW EXECUTE FUNCTION order_lines_fill_shop_id()"
        )


def downgrade() -> None:
    set_timeouts()
    if _postgres():
        op.execute("DROP TRIGGER order_lines_fill_shop_id ON order_lines")
        op.execute("DROP FUNCTION order_lines_fill_shop_id()")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_column("shop_id")
    op.drop_table("backfill_progress")
