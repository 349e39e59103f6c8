"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
from storefront.migration_ops import set_timeouts

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    set_timeouts()
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    set_timeouts()
    ${downgrades if downgrades else "pass"}
