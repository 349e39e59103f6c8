"""payments and processed provider events

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).

New tables only (old code ignores them), so this revision is safe to apply before the
deploy. ``uq_payments_order_id_live`` is what keeps one order from being charged twice: at
most one processing or succeeded payment per order (decision record 0137).
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_WHERE = "status IN ('processing', 'succeeded')"
PROCESSING_WHERE = "status = 'processing'"


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "processing",
                "succeeded",
                "failed",
                "refunded",
                name="status",
                native_enum=False,
                length=16,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method", sa.String(length=255), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents >= 0", name=op.f("ck_payments_amount_non_negative")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_payments_order_id_orders"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_payments_shop_id_shops"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    op.create_index("ix_payments_shop_id_order_id_id", "payments", ["shop_id", "order_id", "id"])
    op.create_index("ix_payments_order_id", "payments", ["order_id"])
    op.create_index(
        "uq_payments_order_id_live",
        "payments",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text(LIVE_WHERE),
        sqlite_where=sa.text(LIVE_WHERE),
    )
    op.create_index(
        "ix_payments_processing_updated_at",
        "payments",
        ["updated_at"],
        postgresql_where=sa.text(PROCESSING_WHERE),
        sqlite_where=sa.text(PROCESSING_WHERE),
    )
    op.create_index(
        "uq_payments_provider_reference", "payments", ["provider_reference"], unique=True
    )
    op.create_table(
        "payment_provider_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_provider_events")),
    )


def downgrade() -> None:
    op.drop_table("payment_provider_events")
    op.drop_index("uq_payments_provider_reference", table_name="payments")
    op.drop_index("ix_payments_processing_updated_at", table_name="payments")
    op.drop_index("uq_payments_order_id_live", table_name="payments")
    op.drop_index("ix_payments_order_id", table_name="payments")
    op.drop_index("ix_payments_shop_id_order_id_id", table_name="payments")
    op.drop_table("payments")
