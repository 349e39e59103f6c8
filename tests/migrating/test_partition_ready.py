"""The head schema is ready for step 3 of docs/scaling.md (decisions 0169, 0202): a copy of
``orders`` and ``order_lines`` made the way step 3 makes it (``LIKE … INCLUDING ALL``, every
index and check, ``PARTITION BY HASH (shop_id)``, 16 partitions) is accepted by PostgreSQL
(it refuses any unique index or key without the partition key), the lines' composite foreign
key can reference the partitioned orders, and the statements the app sends for a shop's
listing and an order's lines plan one partition of the sixteen.

Unique indexes of shop-owned tables that do not include ``shop_id`` block partitioning (and
Citus): the reviewed ones are listed in ``NOT_SHOP_UNIQUE`` and the list only shrinks."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
import sqlalchemy as sa

from storefront.cli import run_migrations
from storefront.kit.db import create_engine

PARTITIONS = 16
SHOP_TABLES = (
    "orders",
    "order_lines",
    "payments",
    "products",
    "webhook_endpoints",
    "sales_daily",
    "memberships",
)
# unique indexes on shop-owned tables without shop_id, each with what removes it (none left:
# payments' two gained shop_id in revisions 0017/0018)
NOT_SHOP_UNIQUE: dict[str, str] = {}


def _run(url: str, *statements: str) -> list[list[str]]:
    async def go() -> list[list[str]]:
        engine = create_engine(url)
        try:
            out: list[list[str]] = []
            async with engine.begin() as conn:
                for statement in statements:
                    result = await conn.exec_driver_sql(statement)
                    out.append([str(row[0]) for row in result] if result.returns_rows else [])
            return out
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _partitioned_copy(table: str) -> list[str]:
    return [
        f"CREATE TABLE {table}_p (LIKE {table} INCLUDING ALL) PARTITION BY HASH (shop_id)",
        *(
            f"CREATE TABLE {table}_p_{i:02d} PARTITION OF {table}_p "
            f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
            for i in range(PARTITIONS)
        ),
    ]


def _partitions_scanned(plan: list[str], table: str) -> set[str]:
    return set(re.findall(rf"\bon ({table}_p_\d\d)\b", "\n".join(plan)))


@pytest.fixture
def head(empty_database: str) -> str:
    if not empty_database.startswith("postgresql"):
        pytest.skip("partitioning is PostgreSQL's (SQLite, the embedded mode, has none)")
    run_migrations(database_url=empty_database)
    return empty_database


def test_unique_indexes_of_shop_owned_tables_include_the_shop(head: str) -> None:
    [rows] = _run(
        head,
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "  # noqa: S608
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_attribute a ON a.attrelid = t.oid "
        "AND a.attname = 'shop_id' WHERE x.indisunique AND t.relname IN ("
        + ", ".join(f"'{t}'" for t in SHOP_TABLES)
        + ") AND NOT a.attnum = ANY (x.indkey::int2[]) ORDER BY 1",
    )
    assert set(rows) == set(NOT_SHOP_UNIQUE)


def test_orders_and_lines_partition_by_shop_and_a_shops_statements_plan_one_partition(
    head: str,
) -> None:
    shop, order, other = (str(uuid.uuid4()) for _ in range(3))
    *_, listing, lines = _run(
        head,
        *_partitioned_copy("orders"),
        *_partitioned_copy("order_lines"),
        "ALTER TABLE order_lines_p ADD CONSTRAINT fk_order_lines_p_shop_id_order_id "
        "FOREIGN KEY (shop_id, order_id) REFERENCES orders_p (shop_id, id) ON DELETE CASCADE",
        # a shop's listing (the repository's keyset page) and an order's lines, as the ORM
        # loads them on the (shop_id, order_id) key
        f"EXPLAIN (COSTS OFF) SELECT * FROM orders_p WHERE orders_p.shop_id = '{shop}' "  # noqa: S608
        "ORDER BY orders_p.id DESC LIMIT 20",
        "EXPLAIN (COSTS OFF) SELECT * FROM order_lines_p WHERE (order_lines_p.shop_id, "  # noqa: S608
        f"order_lines_p.order_id) IN (('{shop}'::uuid, '{order}'::uuid), "
        f"('{shop}'::uuid, '{other}'::uuid))",
    )
    assert len(_partitions_scanned(listing, "orders")) == 1, listing
    assert len(_partitions_scanned(lines, "order_lines")) == 1, lines
    # and one shop's rows are in the same partition number of both tables (co-located)
    assert {p[-2:] for p in _partitions_scanned(listing, "orders")} == {
        p[-2:] for p in _partitions_scanned(lines, "order_lines")
    }


def test_payments_partition_by_shop_with_one_live_payment_per_order(head: str) -> None:
    """The partitioned copy of payments keeps the guarantee that matters: one live payment
    per order (the unique index is per partition, and a shop's rows share one)."""
    shop, order = uuid.uuid4(), uuid.uuid4()
    copy = _partitioned_copy("payments")

    def payment() -> str:
        return (
            "INSERT INTO payments_p (id, shop_id, order_id, status, amount_cents, currency, "  # noqa: S608
            f"payment_method, created_at, updated_at) VALUES ('{uuid.uuid4()}', '{shop}', "
            f"'{order}', 'processing', 100, 'EUR', 'pm_card', now(), now())"
        )

    _run(head, *copy, payment())
    with pytest.raises(sa.exc.IntegrityError, match=r"payments_p_\d\d_shop_id_order_id"):
        _run(head, payment())
