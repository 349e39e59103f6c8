"""job outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

The transactional outbox for background jobs (jobs/outbox.py), and the order's record
that its confirmation email went out (the job's idempotency check).

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("trace_context", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_outbox")),
    )
    with op.batch_alter_table("job_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_job_outbox_next_attempt_at", ["next_attempt_at"], unique=False)

    # a nullable column without a default: no table rewrite, no long lock on PostgreSQL
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("confirmation_sent_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("confirmation_sent_at")

    with op.batch_alter_table("job_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_job_outbox_next_attempt_at")

    op.drop_table("job_outbox")
