"""At head (revisions 0019 and 0020, decision 0151) ``orders``, ``order_lines`` and ``payments``
are partitioned by hash of ``shop_id`` into 16 partitions, and the statements the app sends
for a shop's listing, an order's lines and an order's payments plan one partition of the
sixteen, the same one for the three tables (a shop's rows are co-located).

Unique indexes of shop-owned tables that do not include ``shop_id`` block partitioning (and
Citus): ``NOT_SHOP_UNIQUE`` lists the reviewed ones, and it is empty."""

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


def _partitions_scanned(plan: list[str], table: str) -> set[str]:
    return set(re.findall(rf"\bon ({table}_\d\d)\b", "\n".join(plan)))


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


def test_orders_lines_and_payments_are_partitioned_by_shop(head: str) -> None:
    [rows] = _run(
        head,
        "SELECT p.partrelid::regclass::text || ' ' || p.partstrat::text || ' ' "
        "|| count(i.inhrelid) "
        "FROM pg_partitioned_table p JOIN pg_inherits i ON i.inhparent = p.partrelid "
        "GROUP BY p.partrelid, p.partstrat ORDER BY 1",
    )
    assert rows == [f"{t} h {PARTITIONS}" for t in ("order_lines", "orders", "payments")]


def test_a_shops_statements_plan_one_partition_the_same_for_every_table(head: str) -> None:
    shop, order, other = (str(uuid.uuid4()) for _ in range(3))
    listing, lines, payments = _run(
        head,
        # a shop's listing (the repository's keyset page), an order's lines as the ORM loads
        # them on the (shop_id, order_id) key, and an order's payments
        f"EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE orders.shop_id = '{shop}' "  # noqa: S608
        "ORDER BY orders.id DESC LIMIT 20",
        "EXPLAIN (COSTS OFF) SELECT * FROM order_lines WHERE (order_lines.shop_id, "  # noqa: S608
        f"order_lines.order_id) IN (('{shop}'::uuid, '{order}'::uuid), "
        f"('{shop}'::uuid, '{other}'::uuid))",
        f"EXPLAIN (COSTS OFF) SELECT * FROM payments WHERE payments.shop_id = '{shop}' "  # noqa: S608
        f"AND payments.order_id = '{order}' ORDER BY payments.id",
    )
    scanned = [
        _partitions_scanned(listing, "orders"),
        _partitions_scanned(lines, "order_lines"),
        _partitions_scanned(payments, "payments"),
    ]
    assert [len(s) for s in scanned] == [1, 1, 1], (listing, lines, payments)
    assert len({p[-2:] for s in scanned for p in s}) == 1  # co-located


def test_one_live_payment_per_order_holds_on_the_partitioned_payments(head: str) -> None:
    """The unique index is per partition; a shop's payments share one, so the guarantee that
    matters (money taken once per order) still holds."""
    shop, order = uuid.uuid4(), uuid.uuid4()

    def payment() -> str:
        return (
            "INSERT INTO payments (id, shop_id, order_id, status, amount_cents, currency, "  # noqa: S608
            f"payment_method, created_at, updated_at) VALUES ('{uuid.uuid4()}', '{shop}', "
            f"'{order}', 'processing', 100, 'EUR', 'pm_card', now(), now())"
        )

    _run(
        head,
        "INSERT INTO shops (id, name, slug, created_at, updated_at) VALUES "  # noqa: S608
        f"('{shop}', 'Shop', 'shop-{shop.hex[:8]}', now(), now())",
        "INSERT INTO orders (id, shop_id, status, currency, total_cents, version, "  # noqa: S608
        "created_at, updated_at, shipping_address_sealed) VALUES "
        f"('{order}', '{shop}', 'pending', 'EUR', 100, 1, now(), now(), 'sealed')",
        payment(),
    )
    with pytest.raises(sa.exc.IntegrityError, match=r"payments_\d\d_shop_id_order_id"):
        _run(head, payment())
