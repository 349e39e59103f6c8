"""shop keys (contract): primary keys (shop_id, id), the single-column foreign keys dropped

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

Step 2's contract in docs/scaling.md (decision 0202). The release before this one (0015)
maps every shop-owned row by ``(shop_id, id)`` and references orders by ``(shop_id,
order_id)``; nothing running needs the single-column keys any more. On PostgreSQL, per
table, one ``ALTER TABLE`` drops the primary key on ``id`` and adds ``PRIMARY KEY USING
INDEX`` on 0014's unique ``(shop_id, id)`` index (metadata only: no scan, no index build; the
ACCESS EXCLUSIVE lock lasts milliseconds and is waited for at most ``lock_timeout``). The
foreign keys on ``orders (id)`` go first (they depend on its primary key); 0015's composite
ones keep the same guarantees. ``id`` stays unique in fact (UUIDv7 from the application) but
is no longer a constraint of its own: a table partitioned by ``shop_id`` cannot have one.
SQLite (embedded): the tables are recreated with the new keys (batch mode).

The downgrade builds unique indexes on ``id`` (and a fresh ``(shop_id, id)`` one)
CONCURRENTLY, swaps the primary keys back USING INDEX, and adds the single-column foreign
keys (and 0015's, which depended on the index that was the key) NOT VALID, validated in
their own transactions.
"""

# squawk-exempt: ban-drop-constraint -- the primary key on id is replaced in the same
#   statement by the (shop_id, id) key built CONCURRENTLY in 0014 (USING INDEX: no scan);
#   the single-column foreign keys are superseded by 0015's validated (shop_id, order_id) keys

from collections.abc import Sequence

from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("orders", "order_lines", "payments", "products", "webhook_endpoints")
# child table -> (single-column foreign key on orders (id), ON DELETE), as 0001 and 0010 named
OLD_KEYS = {
    "order_lines": ("fk_order_lines_order_id_orders", "CASCADE"),
    "payments": ("fk_payments_order_id_orders", "RESTRICT"),
}
# 0015's (shop_id, order_id) keys
NEW_KEYS = {
    "order_lines": ("fk_order_lines_shop_id_order_id_orders", "CASCADE"),
    "payments": ("fk_payments_shop_id_order_id_orders", "RESTRICT"),
}
BUILD_TIMEOUT = "30min"  # the downgrade's concurrent builds and validations read whole tables


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    set_timeouts()
    if not _postgres():
        for table, (name, _) in OLD_KEYS.items():
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_constraint(name, type_="foreignkey")
        for table in TABLES:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_index(f"uq_{table}_shop_id_id")
                batch_op.drop_constraint(f"pk_{table}", type_="primary")
                batch_op.create_primary_key(f"pk_{table}", ["shop_id", "id"])
        return
    for table, (name, _) in OLD_KEYS.items():
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY USING INDEX uq_{table}_shop_id_id"
        )


def downgrade() -> None:
    set_timeouts()
    if not _postgres():
        for table in TABLES:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_constraint(f"pk_{table}", type_="primary")
                batch_op.create_primary_key(f"pk_{table}", ["id"])
                batch_op.create_index(f"uq_{table}_shop_id_id", ["shop_id", "id"], unique=True)
        for table, (name, ondelete) in OLD_KEYS.items():
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.create_foreign_key(name, "orders", ["order_id"], ["id"], ondelete=ondelete)
        return
    with op.get_context().autocommit_block():
        op.execute(f"SET statement_timeout = '{BUILD_TIMEOUT}'")
        for table in TABLES:
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {table}_id_key ON {table} (id)"
            )
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_{table}_shop_id_id_new "
                f"ON {table} (shop_id, id)"
            )
        op.execute("RESET statement_timeout")
    set_timeouts()
    # 0015's keys depend on the (shop_id, id) index that is the primary key now: dropped
    # with it and added again (NOT VALID, validated below) on the fresh unique index
    for table, (name, _) in NEW_KEYS.items():
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY USING INDEX {table}_id_key"
        )
        op.execute(f"ALTER INDEX uq_{table}_shop_id_id_new RENAME TO uq_{table}_shop_id_id")
    for table, (name, ondelete) in NEW_KEYS.items():
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (shop_id, order_id) "
            f"REFERENCES orders (shop_id, id) ON DELETE {ondelete} NOT VALID"
        )
    for table, (name, ondelete) in OLD_KEYS.items():
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (order_id) "
            f"REFERENCES orders (id) ON DELETE {ondelete} NOT VALID"
        )
    with op.get_context().autocommit_block():
        op.execute(f"SET statement_timeout = '{BUILD_TIMEOUT}'")
        for table, (name, _) in (*OLD_KEYS.items(), *NEW_KEYS.items()):
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        op.execute("RESET statement_timeout")
    set_timeouts()
