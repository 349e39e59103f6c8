"""Turning ``orders``, ``order_lines`` and ``payments`` into tables partitioned by shop without
stopping the service (docs/scaling.md, steps 3 and 4; decision 0151).

PostgreSQL cannot partition a table in place. Step 3 (revision 0019) creates a partitioned
copy of each table beside it (``orders_p``: ``PARTITION BY HASH (shop_id)``, 16 partitions)
and a trigger on the live table that mirrors every insert, update and delete into the copy;
``storefront backfill orders-partitioned`` (and the lines' and payments') copies the rows
that were there before. Step 4 (revision 0020) checks the copies hold what the live tables
hold, shop by shop, and swaps the names in one short transaction; the trigger then mirrors
the new tables into ``orders_old`` (and the others), which a rollback to the previous code
finds complete.

This module holds what the revisions, the backfills and the tests share: the names, the
mirror trigger's SQL (generated from a column list the revision freezes) and the per-shop
count check. PostgreSQL only: SQLite (the embedded mode) has none of this.
"""

# ruff: noqa: S608 - every name in this SQL is a fixed table or column name of the revisions

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from storefront.kit.startup import CommandRefused

PARTITIONS = 16
# parents first: order lines and payments reference orders by (shop_id, order_id)
TABLES = ("orders", "order_lines", "payments")
CHILDREN = ("order_lines", "payments")
COPY = "_p"  # the partitioned copy during step 3
OLD = "_old"  # the previous table after the swap, kept in step until the contract
# the swap copies the missing rows itself (in its transaction) when the three live tables
# hold at most this many rows together: a fresh or small database (`make run`, the tests)
# migrates in one go; a bigger one is refused until the backfills have run
INLINE_COPY_LIMIT = 10_000
BACKFILL_NAMES = {
    "orders": "orders-partitioned",
    "order_lines": "order-lines-partitioned",
    "payments": "payments-partitioned",
}


def partition_name(table: str, remainder: int) -> str:
    return f"{table}_{remainder:02d}"


def create_partitions_sql(table: str, parent: str) -> list[str]:
    """The 16 hash partitions of ``parent``, named after ``table`` (``orders_00`` …), so
    they keep their names through the swap."""
    return [
        f"CREATE TABLE {partition_name(table, i)} PARTITION OF {parent} "
        f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
        for i in range(PARTITIONS)
    ]


def _function(table: str, target: str) -> str:
    return f"{table}_mirror_to{target.removeprefix(table) or '_live'}"


def mirror_sql(
    table: str,
    target: str,
    columns: Sequence[str],
    *,
    parent: tuple[str, str, Sequence[str]] | None = None,
) -> list[str]:
    """The trigger function and AFTER trigger on ``table`` that mirror each row written into
    ``target``: an insert or update is an upsert on ``(shop_id, id)``, a delete a delete.

    ``parent`` (``orders``' source, its target, its columns) for order lines and payments:
    the row's order is copied first when the target has not got it yet (the backfill of
    orders may not have reached it), so the target's composite foreign key holds.

    Upserts make the trigger and the backfill commute: whichever writes a row first, the
    other keeps the newer version (the backfill does nothing on a conflict and reads the
    live rows ``FOR SHARE``, so an update or delete in flight is waited for, not undone)."""
    function = _function(table, target)
    names = ", ".join(columns)
    values = ", ".join(f"NEW.{c}" for c in columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("shop_id", "id"))
    ensure_parent = ""
    if parent is not None:
        source, parent_target, parent_columns = parent
        parent_names = ", ".join(parent_columns)
        ensure_parent = (
            f"    INSERT INTO {parent_target} ({parent_names}) SELECT {parent_names} "  # nosec B608 - table and column names are this module's constants
            f"FROM {source} WHERE shop_id = NEW.shop_id AND id = NEW.order_id "
            "ON CONFLICT DO NOTHING;\n"
        )
    body = f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM {target} WHERE shop_id = OLD.shop_id AND id = OLD.id;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.shop_id, OLD.id) <> (NEW.shop_id, NEW.id) THEN
            DELETE FROM {target} WHERE shop_id = OLD.shop_id AND id = OLD.id;
        END IF;
    END IF;
{ensure_parent}    INSERT INTO {target} ({names}) VALUES ({values})
        ON CONFLICT (shop_id, id) DO UPDATE SET {updates};
    RETURN NEW;
END
$$ LANGUAGE plpgsql"""  # nosec B608 - table and column names are this module's constants
    return [
        body,
        f"CREATE TRIGGER {table}_mirror AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def drop_mirror_sql(table: str, target: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_mirror ON {table}",
        f"DROP FUNCTION IF EXISTS {_function(table, target)}()",
    ]


def copy_rows_sql(source: str, target: str, columns: Sequence[str]) -> str:
    """Every row of ``source`` missing from ``target`` (the swap's inline copy of a small
    table; parents before children)."""
    names = ", ".join(columns)
    return f"INSERT INTO {target} ({names}) SELECT {names} FROM {source} ON CONFLICT DO NOTHING"  # nosec B608 - table and column names are this module's constants


def mismatched_shops_sql(live: str, copy: str) -> str:
    """One statement (one snapshot: a write and its mirror are seen together or not at
    all): the shops whose row counts differ, with both counts."""
    return (
        "SELECT shop_id, coalesce(l.n, 0), coalesce(c.n, 0) FROM "  # nosec B608 - table and column names are this module's constants
        f"(SELECT shop_id, count(*) AS n FROM {live} GROUP BY shop_id) AS l "
        f"FULL JOIN (SELECT shop_id, count(*) AS n FROM {copy} GROUP BY shop_id) AS c "
        "USING (shop_id) WHERE l.n IS DISTINCT FROM c.n ORDER BY shop_id"
    )


class CopyIncomplete(CommandRefused):
    """A partitioned copy does not hold what its live table holds (``storefront migrate``
    says so and exits 1; the revision rolled back)."""


def describe_mismatch(table: str, copy: str, rows: Sequence[Sequence[object]]) -> str:
    shown = "; ".join(
        f"shop {shop}: {live} live, {copied} copied" for shop, live, copied in rows[:5]
    )
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    return (
        f"{len(rows)} shop(s) of {table} differ from {copy}: {shown}{more}. Run "
        f"`storefront backfill {BACKFILLS_IN_ORDER}` (each resumes where it stopped), then "
        "migrate again. Nothing was changed."
    )


BACKFILLS_IN_ORDER = "; storefront backfill ".join(BACKFILL_NAMES.values())


def check_copies(conn: sa.Connection, pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse (raise) when any ``(live, copy)`` pair differs in a shop's row count."""
    for live, copy in pairs:
        rows = [tuple(r) for r in conn.execute(sa.text(mismatched_shops_sql(live, copy)))]
        if rows:
            raise CopyIncomplete(describe_mismatch(live, copy, rows))
