"""shop keys (foreign keys): order lines and payments reference orders by (shop_id, id)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

Step 2 of docs/scaling.md (decisions 0169, 0170, 0202): composite foreign keys
``order_lines (shop_id, order_id)`` and ``payments (shop_id, order_id)`` -> ``orders
(shop_id, id)``, referencing the unique index of 0014. They are what stays when the
single-column foreign keys on ``orders (id)`` go (0016) and what a table partitioned by
``shop_id`` can be referenced by. On PostgreSQL each is added ``NOT VALID`` (a brief SHARE ROW
EXCLUSIVE on both tables, no scan) and validated in its own transaction (SHARE UPDATE
EXCLUSIVE on the child, ROW SHARE on orders: reads and writes go on). Every line and payment
already carries its order's shop (the code writes it; 0012's trigger fills it for old
writers), so the validation cannot fail on data the application wrote. SQLite (embedded, no
rolling deploy): the tables are recreated with the keys (batch mode).
"""

from collections.abc import Sequence

from alembic import op

from storefront.migration_ops import set_timeouts

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# child table -> (constraint name, ON DELETE), as the models name them
KEYS = {
    "order_lines": ("fk_order_lines_shop_id_order_id_orders", "CASCADE"),
    "payments": ("fk_payments_shop_id_order_id_orders", "RESTRICT"),
}
VALIDATE_TIMEOUT = "30min"


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        for table, (name, ondelete) in KEYS.items():
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.create_foreign_key(
                    name, "orders", ["shop_id", "order_id"], ["shop_id", "id"], ondelete=ondelete
                )
        return
    for table, (name, ondelete) in KEYS.items():
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (shop_id, order_id) "
            f"REFERENCES orders (shop_id, id) ON DELETE {ondelete} NOT VALID"
        )
    with op.get_context().autocommit_block():
        # each in its own transaction: the scan holds SHARE UPDATE EXCLUSIVE only; it reads
        # the whole child table (and probes orders per row): longer than the default 60 s
        op.execute(f"SET statement_timeout = '{VALIDATE_TIMEOUT}'")
        for table, (name, _) in KEYS.items():
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        op.execute("RESET statement_timeout")
    set_timeouts()  # the autocommit blocks ended the revision's transaction and its SET LOCALs


def downgrade() -> None:
    set_timeouts()
    for table, (name, _) in KEYS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="foreignkey")
