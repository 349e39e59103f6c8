"""privacy: data exports, consent records

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

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

# consent records are a history: a decision is never rewritten (a new one is appended).
# Deleting stays possible (a user row deleted by an operator cascades).
PG_APPEND_ONLY = """
CREATE FUNCTION consent_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_records is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
SQLITE_APPEND_ONLY = """
CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent_records is append-only: UPDATE refused');
END
"""

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_exports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "ready",
                "failed",
                "expired",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archive_sealed", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_data_exports_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
    )
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.create_index("ix_data_exports_user_id", ["user_id"], unique=False)
        batch_op.create_index("ix_data_exports_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "consent_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_records_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_records_user_id_purpose_recorded_at",
            ["user_id", "purpose", "recorded_at"],
            unique=False,
        )
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records "
            "FOR EACH ROW EXECUTE FUNCTION consent_records_append_only()"
        )
    else:
        op.execute(SQLITE_APPEND_ONLY)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_records_no_update ON consent_records")
        op.execute("DROP FUNCTION consent_records_append_only()")
    else:
        op.execute("DROP TRIGGER consent_records_no_update")
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_records_user_id_purpose_recorded_at")
    op.drop_table("consent_records")
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.drop_index("ix_data_exports_expires_at")
        batch_op.drop_index("ix_data_exports_user_id")
    op.drop_table("data_exports")
