"""domain events, consumer inbox and the sales projection

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).

New tables only (old code ignores them), so this revision is safe to apply before the
deploy. ``domain_events`` is the stored event stream and the events' outbox (decision 0140);
``event_inbox`` makes every consumer handle an event once; ``sales_daily`` is the sales
projection, rebuilt from the stream by ``storefront events replay``.
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
    )
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.create_index("ix_domain_events_next_attempt_at", ["next_attempt_at"], unique=False)
        batch_op.create_index("ix_domain_events_shop_id", ["shop_id"], unique=False)

    op.create_table(
        "event_inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_event_inbox")),
    )

    op.create_table(
        "sales_daily",
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("orders_placed", sa.Integer(), nullable=False),
        sa.Column("placed_cents", sa.BigInteger(), nullable=False),
        sa.Column("orders_paid", sa.Integer(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.Column("orders_cancelled", sa.Integer(), nullable=False),
        sa.Column("orders_expired", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "day", "currency", name=op.f("pk_sales_daily")),
    )


def downgrade() -> None:
    op.drop_table("sales_daily")
    op.drop_table("event_inbox")
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.drop_index("ix_domain_events_shop_id")
        batch_op.drop_index("ix_domain_events_next_attempt_at")
    op.drop_table("domain_events")
