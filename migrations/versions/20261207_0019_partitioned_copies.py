"""partitioned copies of orders, order lines and payments, kept in step by mirror triggers

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

Zero-downtime checklist (docs/migrations.md): expand -> backfill -> contract, each in its own
revision and the contract a release later; old code (N-1) must keep working on this schema
(`make n-minus-1`); no long table locks (set_timeouts below: lock_timeout and
statement_timeout on PostgreSQL); indexes on existing tables CONCURRENTLY; the downgrade must
really undo the upgrade (the stairway test runs both). `make migration-lint` runs squawk on
this revision's SQL: an unsafe operation that is nonetheless right here needs a reviewed
exemption line, `# squawk-exempt: <rule> -- <why it is safe here>`.

Step 3 of docs/scaling.md (decision 0151). On PostgreSQL, for ``orders``, ``order_lines`` and
``payments``: a copy ``<table>_p`` (``LIKE`` the table: columns, defaults, checks) ``PARTITION
BY HASH (shop_id)`` with 16 partitions ``<table>_00`` … ``<table>_15`` (named for the table
they serve after the swap), its primary key ``(shop_id, id)``, the table's indexes (named
``<index>_p`` until the swap gives them the table's names) and its foreign keys (lines and
payments reference the copy of orders by ``(shop_id, order_id)``). An AFTER row trigger on
each live table mirrors every insert, update (an upsert) and delete into its copy, so code of
this release and of the previous one writes both without knowing. The rows already there are
copied by ``storefront backfill orders-partitioned``, ``order-lines-partitioned``,
``payments-partitioned``; 0020 swaps the names once the copies match.

Locks: the copies are new and empty (their indexes and keys cost nothing); CREATE TRIGGER
takes SHARE ROW EXCLUSIVE on each live table and the foreign keys the same on ``shops`` and
``users``, for milliseconds, waited for at most ``lock_timeout``. SQLite: nothing (the
embedded mode has no partitioning).

The column lists below are this revision's snapshot of the three tables: a later revision that
adds a column to one of them must add it to the copy and recreate the mirror (or come after
the contract, which drops the mirror).
"""

from collections.abc import Sequence

from alembic import op

from storefront.migration_ops import set_timeouts
from storefront.partitioning import COPY, create_partitions_sql, drop_mirror_sql, mirror_sql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "orders": (
        "id", "shop_id", "customer_id", "status", "currency", "total_cents", "version",
        "created_at", "updated_at", "shipping_address_sealed", "confirmation_sent_at",
        "expires_at",
    ),
    "order_lines": (
        "id", "order_id", "position", "product_id", "sku", "name", "unit_price_cents",
        "quantity", "line_total_cents", "shop_id",
    ),
    "payments": (
        "id", "shop_id", "order_id", "status", "amount_cents", "currency", "payment_method",
        "provider_reference", "failure_code", "claimed_until", "settled_at", "created_at",
        "updated_at",
    ),
}  # fmt: skip
# the live tables' indexes (name -> definition after ON <table>), as the models declare them
INDEXES = {
    "orders": {
        "ix_orders_customer_id": "(customer_id)",
        "ix_orders_pending_expires_at": "(expires_at) WHERE status = 'pending'",
        "ix_orders_shop_id_customer_id_id": "(shop_id, customer_id, id)",
        "ix_orders_shop_id_id": "(shop_id, id)",
        "ix_orders_shop_id_status_id": "(shop_id, status, id)",
    },
    "order_lines": {
        "ix_order_lines_order_id": "(order_id)",
        "ix_order_lines_product_id": "(product_id)",
    },
    "payments": {
        "ix_payments_order_id": "(order_id)",
        "ix_payments_processing_updated_at": "(updated_at) WHERE status = 'processing'",
        "ix_payments_shop_id_order_id_id": "(shop_id, order_id, id)",
        "uq_payments_shop_id_order_id_live": "UNIQUE (shop_id, order_id) "
        "WHERE status IN ('processing', 'succeeded')",
        "uq_payments_shop_id_provider_reference": "UNIQUE (shop_id, provider_reference)",
        "ix_payments_provider_reference": "(provider_reference)",
    },
}
FOREIGN_KEYS = {
    "orders": (
        "CONSTRAINT fk_orders_customer_id_users FOREIGN KEY (customer_id) "
        "REFERENCES users (id) ON DELETE SET NULL",
        "CONSTRAINT fk_orders_shop_id_shops FOREIGN KEY (shop_id) "
        "REFERENCES shops (id) ON DELETE RESTRICT",
    ),
    "order_lines": (
        "CONSTRAINT fk_order_lines_shop_id_order_id_orders FOREIGN KEY (shop_id, order_id) "
        "REFERENCES orders_p (shop_id, id) ON DELETE CASCADE",
    ),
    "payments": (
        "CONSTRAINT fk_payments_shop_id_order_id_orders FOREIGN KEY (shop_id, order_id) "
        "REFERENCES orders_p (shop_id, id) ON DELETE RESTRICT",
        "CONSTRAINT fk_payments_shop_id_shops FOREIGN KEY (shop_id) "
        "REFERENCES shops (id) ON DELETE RESTRICT",
    ),
}


def create_copy_sql(table: str) -> list[str]:
    copy = f"{table}{COPY}"
    constraints = ",\n    ".join(
        (f"CONSTRAINT pk_{copy} PRIMARY KEY (shop_id, id)", *FOREIGN_KEYS[table])
    )
    statements = [
        f"CREATE TABLE {copy} (\n    LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
        f"\n    {constraints}\n) PARTITION BY HASH (shop_id)",
        *create_partitions_sql(table, copy),
    ]
    for name, definition in INDEXES[table].items():
        unique = definition.startswith("UNIQUE ")
        columns = definition.removeprefix("UNIQUE ")
        statements.append(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX {name}{COPY} ON {copy} {columns}"
        )
    return statements


def upgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in COLUMNS:  # orders first: the others' foreign keys reference its copy
        for statement in create_copy_sql(table):
            op.execute(statement)
    orders = ("orders", f"orders{COPY}", COLUMNS["orders"])
    for table, columns in COLUMNS.items():
        parent = None if table == "orders" else orders
        for statement in mirror_sql(table, f"{table}{COPY}", columns, parent=parent):
            op.execute(statement)


def downgrade() -> None:
    set_timeouts()
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in reversed(COLUMNS):
        for statement in drop_mirror_sql(table, f"{table}{COPY}"):
            op.execute(statement)
    for table in reversed(COLUMNS):
        op.execute(f"DROP TABLE {table}{COPY}")
