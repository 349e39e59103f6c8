"""order expiry and hold limits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Pending orders expire (a new terminal status ``expired`` and the order's ``expires_at``) and
a shop caps what one customer may hold unpaid (four nullable limits on ``shops``; NULL means
the platform default from the settings). Decision record 0118.

Zero-downtime checklist: expand -> backfill -> contract; no long table locks (env.py sets
lock_timeout on PostgreSQL); create big indexes CONCURRENTLY in their own revision; the
downgrade must really undo the upgrade (the stairway test runs both).

- The new columns are nullable without a default: no table rewrite on PostgreSQL.
- No backfill: an order placed before this revision (or by old code during a rolling deploy)
  has no ``expires_at``; the expiry job treats it as ``created_at`` + the payment window.
- The status CHECK grows by one value. PostgreSQL: the new constraint is added NOT VALID and
  validated afterwards (VALIDATE takes a lock that lets reads and writes through); old code
  never writes ``expired``, so old and new code run side by side.
- The partial index over pending orders' expiry is built CONCURRENTLY on PostgreSQL (outside
  the revision's transaction), so building it blocks no writes on a big ``orders`` table.
- Downgrade: expired orders become ``cancelled`` (their stock is already back, which is what
  a cancelled order means) before the old CHECK returns.
"""

# squawk-exempt: require-statement-timeout -- reviewed 2026-12-07: applied in the field before the
#   template set statement_timeout; kept as shipped, not rewritten (its statements create new
#   tables or touch small ones; env.py sets lock_timeout)
# squawk-exempt: ban-drop-constraint, constraint-missing-not-valid -- reviewed 2026-12-07:
#   ck_orders_status replaced by a wider check (old code writes a subset of its values); the
#   VALIDATE scans orders in the same transaction (applied in the field; today: a later revision)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("pending", "paid", "fulfilled", "cancelled")
NEW_STATUSES = (*OLD_STATUSES, "expired")
STATUS_CHECK = "ck_orders_status"
EXPIRY_INDEX = "ix_orders_pending_expires_at"
PENDING = "status = 'pending'"
SHOP_LIMITS = (
    "max_line_quantity",
    "max_order_units",
    "max_pending_units",
    "max_pending_stock_percent",
)


def _in(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _replace_status_check(statuses: Sequence[str]) -> None:
    if _postgres():
        op.execute(f"ALTER TABLE orders DROP CONSTRAINT {STATUS_CHECK}")
        op.execute(
            f"ALTER TABLE orders ADD CONSTRAINT {STATUS_CHECK} CHECK ({_in(statuses)}) NOT VALID"
        )
        op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {STATUS_CHECK}")
    else:
        with op.batch_alter_table("orders", schema=None) as batch_op:
            batch_op.drop_constraint(op.f(STATUS_CHECK), type_="check")
            batch_op.create_check_constraint(op.f(STATUS_CHECK), _in(statuses))


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    _replace_status_check(NEW_STATUSES)

    with op.batch_alter_table("shops", schema=None) as batch_op:
        for name in SHOP_LIMITS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))

    if _postgres():
        with op.get_context().autocommit_block():
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {EXPIRY_INDEX} "
                f"ON orders (expires_at) WHERE {PENDING}"
            )
    else:
        with op.batch_alter_table("orders", schema=None) as batch_op:
            batch_op.create_index(
                EXPIRY_INDEX, ["expires_at"], unique=False, sqlite_where=sa.text(PENDING)
            )


def downgrade() -> None:
    if _postgres():
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {EXPIRY_INDEX}")
    else:
        with op.batch_alter_table("orders", schema=None) as batch_op:
            batch_op.drop_index(EXPIRY_INDEX)

    with op.batch_alter_table("shops", schema=None) as batch_op:
        for name in reversed(SHOP_LIMITS):
            batch_op.drop_column(name)

    op.execute("UPDATE orders SET status = 'cancelled' WHERE status = 'expired'")
    _replace_status_check(OLD_STATUSES)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
