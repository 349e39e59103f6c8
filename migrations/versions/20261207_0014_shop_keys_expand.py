"""shop keys (expand): a unique (shop_id, id) index on each shop-owned table keyed by id

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

Step 2's expand in docs/scaling.md (decisions 0169, 0170): `orders`, `order_lines`,
`payments`, `products` and `webhook_endpoints` get a unique index on `(shop_id, id)`, built
CONCURRENTLY (reads and writes go on; `id` is already unique, so it cannot fail on data).
It is what the contract step turns into the primary key (`ADD PRIMARY KEY USING INDEX`,
metadata only) and what composite foreign keys `(shop_id, order_id) -> orders (shop_id, id)`
reference: the shape hash partitions by shop and a distributed engine (Citus) need. Nothing
reads differently: old and new code are unaffected. SQLite: plain unique indexes.
"""

from collections.abc import Sequence

from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("orders", "order_lines", "payments", "products", "webhook_endpoints")
# a concurrent build reads the whole table twice: longer than the default 60 s may be needed
BUILD_TIMEOUT = "30min"


def _name(table: str) -> str:
    return f"uq_{table}_shop_id_id"


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for table in TABLES:
            op.create_index(_name(table), table, ["shop_id", "id"], unique=True)
        return
    with op.get_context().autocommit_block():
        op.execute(f"SET statement_timeout = '{BUILD_TIMEOUT}'")
        for table in TABLES:
            # IF NOT EXISTS: a build interrupted before leaves an INVALID index; drop it and
            # run again (docs/migrations.md, "Add an index")
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {_name(table)} "
                f"ON {table} (shop_id, id)"
            )
        op.execute("RESET statement_timeout")
    set_timeouts()


def downgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for table in TABLES:
            op.drop_index(_name(table), table_name=table)
        return
    with op.get_context().autocommit_block():
        for table in TABLES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_name(table)}")
    set_timeouts()
