"""tamper-evident audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).

A new, empty table: nothing to backfill. On PostgreSQL a trigger makes it append-only for
every role that does not set ``session_replication_role = replica`` (which needs superuser
rights the application's role must not have): UPDATE, DELETE and TRUNCATE raise.
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSE_CHANGES = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("shop_id", sa.Uuid(), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_shop_id_seq", ["shop_id", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_actor_id", ["actor_id"], unique=False)
        batch_op.create_index(
            "ix_audit_events_object_type_object_id", ["object_type", "object_id"], unique=False
        )
    if op.get_context().dialect.name == "postgresql":
        op.execute(REFUSE_CHANGES)
        op.execute(
            "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE "
            "ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE "
            "ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_object_type_object_id")
        batch_op.drop_index("ix_audit_events_actor_id")
        batch_op.drop_index("ix_audit_events_shop_id_seq")
    op.drop_table("audit_events")
