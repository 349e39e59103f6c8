"""webhook endpoints

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).

A new table only: old code ignores it, so this revision is safe to apply before the deploy.
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_webhook_endpoints_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("ix_webhook_endpoints_shop_id", "webhook_endpoints", ["shop_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_endpoints_shop_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
