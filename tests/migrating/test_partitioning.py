"""Steps 3 and 4 of docs/scaling.md on PostgreSQL (decision 0151): partitioned copies kept in
step by mirror triggers (0019), the registered backfills that copy the rows already there
(resumable), the swap (0020) that refuses while a copy differs from its table, copies inline
on a small database, mirrors the other way afterwards, and is undone by its downgrade.

The database starts at 0018 with orders, lines and payments written before the copies
existed (the old release's rows), then 0019 is applied."""

# ruff: noqa: S608 - the SQL here is the test's own, with ids it made

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from alembic import command

from storefront import partitioning
from storefront.backfills import BACKFILLS, Progress, progress_of, run_backfill
from storefront.cli import run_migrations
from storefront.kit.db import create_engine
from storefront.migrating import alembic_config, current_revision
from storefront.migration_head import head_revision
from storefront.partitioning import BACKFILL_NAMES, TABLES, CopyIncomplete

SHOPS, ORDERS_PER_SHOP = 3, 10
ORDERS = SHOPS * ORDERS_PER_SHOP
LINES = ORDERS * 2


def _sql(url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` in one transaction; each one's rows."""

    async def go() -> list[list[tuple[Any, ...]]]:
        engine = create_engine(url)
        try:
            out: list[list[tuple[Any, ...]]] = []
            async with engine.begin() as conn:
                for statement in statements:
                    result = await conn.exec_driver_sql(statement)
                    out.append([tuple(r) for r in result] if result.returns_rows else [])
            return out
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _one(url: str, statement: str) -> Any:
    return _sql(url, statement)[0][0][0]


def _order(shop: uuid.UUID, order: uuid.UUID, status: str = "pending") -> str:
    return (
        "INSERT INTO orders (id, shop_id, status, currency, total_cents, version, created_at, "
        f"updated_at, shipping_address_sealed) VALUES ('{order}', '{shop}', '{status}', 'EUR', "
        "1000, 1, now(), now(), 'sealed')"
    )


def _line(shop: uuid.UUID, order: uuid.UUID, position: int) -> str:
    return (
        "INSERT INTO order_lines (id, order_id, shop_id, position, product_id, sku, name, "
        f"unit_price_cents, quantity, line_total_cents) VALUES ('{uuid.uuid4()}', '{order}', "
        f"'{shop}', {position}, '{uuid.uuid4()}', 'SKU-{position}', 'Thing', 500, 2, 1000)"
    )


def _payment(shop: uuid.UUID, order: uuid.UUID, status: str = "failed") -> str:
    return (
        "INSERT INTO payments (id, shop_id, order_id, status, amount_cents, currency, "
        f"payment_method, created_at, updated_at) VALUES ('{uuid.uuid4()}', '{shop}', "
        f"'{order}', '{status}', 1000, 'EUR', 'pm_card_visa', now(), now())"
    )


def _shop(shop: uuid.UUID) -> str:
    return (
        "INSERT INTO shops (id, name, slug, created_at, updated_at) VALUES "
        f"('{shop}', 'Shop', 'shop-{shop.hex[:12]}', now(), now())"
    )


def _differences(url: str, table: str, other: str) -> int:
    """Rows of either table the other has not got, column for column."""
    return int(
        _one(
            url,
            f"SELECT count(*) FROM ((TABLE {table} EXCEPT TABLE {other}) "
            f"UNION ALL (TABLE {other} EXCEPT TABLE {table})) AS d",
        )
    )


def _partitioned(url: str) -> dict[str, int]:
    """Partitioned tables and their partition counts."""
    rows = _sql(
        url,
        "SELECT p.partrelid::regclass::text, count(i.inhrelid) FROM pg_partitioned_table p "
        "LEFT JOIN pg_inherits i ON i.inhparent = p.partrelid GROUP BY 1",
    )[0]
    return {name: int(n) for name, n in rows}


def _backfill(url: str, table: str, **options: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await run_backfill(engine, BACKFILLS[BACKFILL_NAMES[table]], **options)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def at_0019(empty_database: str) -> str:
    """A database at 0019 whose orders, lines and payments were written before it."""
    if not empty_database.startswith("postgresql"):
        pytest.skip("partitioning is PostgreSQL's (SQLite, the embedded mode, has none)")
    run_migrations("0018", database_url=empty_database)
    statements = []
    for _ in range(SHOPS):
        shop = uuid.uuid4()
        statements.append(_shop(shop))
        for _ in range(ORDERS_PER_SHOP):
            order = uuid.uuid4()
            statements += [_order(shop, order), _line(shop, order, 0), _line(shop, order, 1)]
            statements.append(_payment(shop, order))
    _sql(empty_database, *statements)
    run_migrations("0019", database_url=empty_database)
    return empty_database


def test_the_copies_are_partitioned_by_shop_and_start_empty(at_0019: str) -> None:
    assert _partitioned(at_0019) == dict.fromkeys((f"{t}_p" for t in TABLES), 16)
    for table in TABLES:
        assert _one(at_0019, f"SELECT count(*) FROM {table}_p") == 0


def test_writes_through_the_old_tables_are_mirrored_into_the_copies(at_0019: str) -> None:
    """What the previous release does during the expand: it writes the live tables only."""
    url = at_0019
    shop = _one(url, "SELECT shop_id FROM orders LIMIT 1")
    old_order, old_line, old_payment = _sql(
        url,
        f"SELECT id FROM orders WHERE shop_id = '{shop}' ORDER BY id LIMIT 1",
        f"SELECT id FROM order_lines WHERE shop_id = '{shop}' ORDER BY id LIMIT 1",
        f"SELECT id FROM payments WHERE shop_id = '{shop}' ORDER BY id DESC LIMIT 1",
    )
    new_order = uuid.uuid4()
    _sql(
        url,
        _order(shop, new_order),
        _line(shop, new_order, 0),
        _payment(shop, new_order, "processing"),
        f"UPDATE orders SET status = 'paid', version = 2 WHERE id = '{new_order}'",
        # rows from before 0019: an update copies them (a payment's order comes with it)
        f"UPDATE orders SET status = 'cancelled' WHERE id = '{old_order[0][0]}'",
        f"UPDATE payments SET failure_code = 'card_declined' WHERE id = '{old_payment[0][0]}'",
    )
    # a delete removes the copied row; the new line goes with its order (ON DELETE CASCADE)
    _sql(url, f"DELETE FROM order_lines WHERE id = '{old_line[0][0]}'")
    _sql(url, f"UPDATE order_lines SET quantity = 3 WHERE order_id = '{new_order}'")

    for table in TABLES:  # every copied row is its live row, column for column
        assert _one(url, f"SELECT count(*) FROM (TABLE {table}_p EXCEPT TABLE {table}) d") == 0
    copied = _sql(
        url,
        f"SELECT status, version FROM orders_p WHERE id = '{new_order}'",
        f"SELECT quantity FROM order_lines_p WHERE order_id = '{new_order}'",
        f"SELECT status FROM payments_p WHERE order_id = '{new_order}'",
        f"SELECT status FROM orders_p WHERE id = '{old_order[0][0]}'",
        f"SELECT failure_code FROM payments_p WHERE id = '{old_payment[0][0]}'",
        "SELECT count(*) FROM orders_p",
        f"SELECT count(*) FROM order_lines_p WHERE id = '{old_line[0][0]}'",
    )
    assert copied == [
        [("paid", 2)],
        [(3,)],
        [("processing",)],
        [("cancelled",)],
        [("card_declined",)],
        [(3,)],  # the new order, the old one updated, the old payment's order
        [(0,)],
    ]
    _sql(url, f"DELETE FROM payments WHERE order_id = '{new_order}'")
    _sql(url, f"DELETE FROM orders WHERE id = '{new_order}'")
    assert _one(url, f"SELECT count(*) FROM orders_p WHERE id = '{new_order}'") == 0
    assert _one(url, f"SELECT count(*) FROM order_lines_p WHERE order_id = '{new_order}'") == 0


class _Interrupted(Exception):
    pass


def test_the_backfills_copy_every_row_and_resume_after_an_interruption(at_0019: str) -> None:
    url = at_0019
    # lines first, out of order on purpose: each batch copies the orders its lines need
    dry = _backfill(url, "order_lines", dry_run=True, batch_size=8)
    assert (dry.pending_at_start, dry.batches) == (LINES, 8)
    assert _one(url, "SELECT count(*) FROM order_lines_p") == 0  # the dry run wrote nothing
    seen: list[int] = []

    def stop_after_two_batches(step: Progress) -> None:
        seen.append(step.done)
        if len(seen) == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        _backfill(url, "order_lines", batch_size=8, on_progress=stop_after_two_batches)

    async def read_progress() -> Any:
        engine = create_engine(url)
        try:
            return await progress_of(engine, BACKFILL_NAMES["order_lines"])
        finally:
            await engine.dispose()

    stopped = asyncio.run(read_progress())
    assert (stopped["rows_done"], stopped["batches"], stopped["finished_at"]) == (16, 2, None)
    assert _one(url, "SELECT count(*) FROM order_lines_p") == 16

    resumed = _backfill(url, "order_lines", batch_size=8)
    assert (resumed.rows_changed, resumed.rows_done, resumed.batches) == (LINES - 16, LINES, 6)
    orders = _backfill(url, "orders", batch_size=7)
    # the lines' batches had copied their orders already
    assert orders.rows_changed == 0
    assert orders.pending_at_start == 0
    payments = _backfill(url, "payments", batch_size=100)
    assert payments.rows_changed == ORDERS
    for table in TABLES:
        assert _differences(url, table, f"{table}_p") == 0


def test_a_finished_backfill_verifies_the_copy_shop_by_shop(at_0019: str) -> None:
    """A row in the copy that its table has not got (written with the mirror switched off,
    say) is not something a backfill repairs: it says which shop, and fails."""
    url = at_0019
    assert _backfill(url, "orders").rows_changed == ORDERS  # copied and verified
    shop = _one(url, "SELECT shop_id FROM orders LIMIT 1")
    stray = uuid.uuid4()
    _sql(
        url,
        "SET LOCAL session_replication_role = replica",  # the mirror off, as in a bulk load
        _order(shop, stray).replace("INSERT INTO orders ", "INSERT INTO orders_p "),
    )
    with pytest.raises(
        CopyIncomplete, match=rf"1 shop\(s\) of orders differ from orders_p: shop {shop}"
    ):
        _backfill(url, "orders")


def test_the_swap_refuses_while_a_copy_differs_and_names_the_backfills(
    at_0019: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = at_0019
    monkeypatch.setattr(partitioning, "INLINE_COPY_LIMIT", ORDERS)  # "a big database"
    with pytest.raises(CopyIncomplete) as refused:
        run_migrations(database_url=url)
    message = str(refused.value)
    assert "3 shop(s) of orders differ from orders_p" in message
    assert f"{ORDERS_PER_SHOP} live, 0 copied" in message
    assert "storefront backfill orders-partitioned" in message
    assert current_revision(url) == "0019"  # nothing changed
    assert _partitioned(url) == dict.fromkeys((f"{t}_p" for t in TABLES), 16)

    for table in TABLES:
        _backfill(url, table)
    run_migrations(database_url=url)
    assert current_revision(url) == head_revision()
    assert _partitioned(url) == dict.fromkeys(TABLES, 16)


def test_on_a_small_database_the_swap_copies_inline_and_mirrors_into_the_old_tables(
    at_0019: str,
) -> None:
    url = at_0019
    run_migrations(database_url=url)
    assert _partitioned(url) == dict.fromkeys(TABLES, 16)
    for table in TABLES:
        assert _differences(url, table, f"{table}_old") == 0
    assert _one(url, "SELECT count(*) FROM orders") == ORDERS

    # after the swap the new tables are written, and mirrored into the old ones
    shop = _one(url, "SELECT shop_id FROM orders LIMIT 1")
    order = uuid.uuid4()
    _sql(url, _order(shop, order), _line(shop, order, 0), _payment(shop, order, "processing"))
    _sql(url, f"UPDATE orders SET status = 'paid' WHERE id = '{order}'")
    for table in TABLES:
        assert _differences(url, table, f"{table}_old") == 0
    assert _one(url, f"SELECT status FROM orders_old WHERE id = '{order}'") == "paid"

    # the downgrade: the old tables take their names back, complete, and are mirrored again
    command.downgrade(alembic_config(url), "0019")
    assert _partitioned(url) == dict.fromkeys((f"{t}_p" for t in TABLES), 16)
    assert _one(url, f"SELECT status FROM orders WHERE id = '{order}'") == "paid"
    assert _one(url, "SELECT count(*) FROM orders") == ORDERS + 1
    _sql(url, f"UPDATE orders SET status = 'fulfilled' WHERE id = '{order}'")
    assert _one(url, f"SELECT status FROM orders_p WHERE id = '{order}'") == "fulfilled"


@pytest.mark.postgres
async def test_the_harness_empties_the_old_tables_the_swap_keeps(postgres_url: str) -> None:
    """The tests' clean-up deletes with triggers off, so the swap's mirror cannot empty the
    ``_old`` tables; the clean-up must, or a later test's write is mirrored beside an earlier
    test's rows (and into their unique indexes)."""
    from sqlalchemy import text

    from storefront.resources import open_resources
    from tests.conftest import make_settings
    from tests.support.apps import empty_tables

    shop, order = uuid.uuid4(), uuid.uuid4()
    settings = make_settings(postgres_url)
    async with open_resources(settings, role="cli") as resources:
        async with resources.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(
                text(_order(shop, order).replace("INTO orders ", "INTO orders_old "))
            )
        await empty_tables(resources)
        async with resources.engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM orders_old"))).scalar_one()
    assert left == 0
