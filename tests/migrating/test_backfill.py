"""``storefront backfill``: expand (0012) -> backfill order-lines-shop-id -> contract (0013),
on SQLite and PostgreSQL. The contract refuses while rows are pending; a dry run changes
nothing; a backfill killed mid-run resumes and ends with exactly the right rows."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storefront.backfills import (
    BACKFILLS,
    Progress,
    Report,
    progress_of,
    replica_lag,
    run_backfill,
)
from storefront.cli import run_migrations
from storefront.kit.db import create_engine, utcnow
from storefront.migrating import current_revision
from storefront.migration_head import head_revision
from tests.support.servers import CLI, cli_env

NAME = "order-lines-shop-id"
SHOPS, ORDERS_PER_SHOP, LINES_PER_ORDER = 3, 20, 2
LINES = SHOPS * ORDERS_PER_SHOP * LINES_PER_ORDER

shops = sa.table(
    "shops",
    *(sa.column(n) for n in ("name", "slug", "created_at", "updated_at")),
    sa.column("id", sa.Uuid()),
)
orders = sa.table(
    "orders",
    sa.column("id", sa.Uuid()),
    sa.column("shop_id", sa.Uuid()),
    *(
        sa.column(n)
        for n in ("status", "currency", "total_cents", "shipping_address_sealed", "version")
    ),
    *(sa.column(n) for n in ("created_at", "updated_at")),
)
lines = sa.table(
    "order_lines",
    sa.column("id", sa.Uuid()),
    sa.column("order_id", sa.Uuid()),
    sa.column("shop_id", sa.Uuid()),
    sa.column("product_id", sa.Uuid()),
    *(
        sa.column(n)
        for n in ("position", "sku", "name", "unit_price_cents", "quantity", "line_total_cents")
    ),
)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _on(url: str, use: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    """``use`` an engine of its own for ``url`` (disposed afterwards)."""

    async def main() -> Any:
        engine = create_engine(url)
        try:
            return await use(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _progress(url: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = _on(url, lambda engine: progress_of(engine, NAME))
    return result


def _backfill(url: str, **options: Any) -> Report:
    report: Report = _on(url, lambda engine: run_backfill(engine, BACKFILLS[NAME], **options))
    return report


async def _execute(url: str, *statements: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(statement)
    finally:
        await engine.dispose()


async def _rows(url: str, stmt: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(stmt)).all())
    finally:
        await engine.dispose()


def _line(order_id: uuid.UUID, position: int, shop_id: uuid.UUID | None = None) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "order_id": order_id,
        "shop_id": shop_id,
        "product_id": uuid.uuid4(),
        "position": position,
        "sku": f"SKU-{position}",
        "name": "Thing",
        "unit_price_cents": 250,
        "quantity": 2,
        "line_total_cents": 500,
    }


@pytest.fixture
def expanded(empty_database: str) -> str:
    """A database at 0012 (the expand) holding order lines written before it: no shop_id."""
    run_migrations("0012", database_url=empty_database)
    now = utcnow()
    shop_rows, order_rows, line_rows = [], [], []
    for s in range(SHOPS):
        shop_id = uuid.uuid4()
        shop_rows.append(
            {
                "id": shop_id,
                "name": f"Shop {s}",
                "slug": f"shop-{s}",
                "created_at": now,
                "updated_at": now,
            }
        )
        for _ in range(ORDERS_PER_SHOP):
            order_id = uuid.uuid4()
            order_rows.append(
                {
                    "id": order_id,
                    "shop_id": shop_id,
                    "status": "pending",
                    "currency": "EUR",
                    "total_cents": 1000,
                    "shipping_address_sealed": "x",
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            line_rows += [_line(order_id, p) for p in range(LINES_PER_ORDER)]
    _run(
        _execute(
            empty_database,
            shops.insert().values(shop_rows),
            orders.insert().values(order_rows),
            lines.insert().values(line_rows),
            # on PostgreSQL 0012's trigger filled them in: as they were before it existed
            lines.update().values(shop_id=None),
        )
    )
    return empty_database


def _line_shops(url: str) -> dict[uuid.UUID, tuple[uuid.UUID | None, uuid.UUID]]:
    """Each line: (its shop_id, its order's shop_id)."""
    stmt = sa.select(lines.c.id, lines.c.shop_id, orders.c.shop_id).join_from(
        lines, orders, lines.c.order_id == orders.c.id
    )
    return {row[0]: (row[1], row[2]) for row in _run(_rows(url, stmt))}


def _cli(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        CLI + args, env=cli_env(url), capture_output=True, text=True, timeout=300, check=False
    )


def test_the_contract_refuses_until_the_backfill_is_done(expanded: str) -> None:
    refused = _cli(["migrate"], expanded)
    assert refused.returncode != 0
    assert f"storefront backfill {NAME}" in refused.stdout + refused.stderr
    assert current_revision(expanded) == "0012"  # nothing changed

    done = _cli(["backfill", NAME, "--batch-size", "50"], expanded)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{LINES} row(s) changed in 3 batch(es)" in done.stdout
    assert all(line == order for line, order in _line_shops(expanded).values())

    migrated = _cli(["migrate"], expanded)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert current_revision(expanded) == head_revision()  # 0013 and any revision after it


def test_old_code_writing_lines_without_a_shop_keeps_working_on_postgresql(
    expanded: str,
) -> None:
    """The previous release inserts lines without shop_id: on PostgreSQL (where deploys roll)
    0012's trigger fills it from the order, before and after the contract (0013), as long as
    ``order_lines`` is that table: from the swap to the partitioned table (0020, decision
    0151) every writer must name the shop, which every release since 0012 does (a BEFORE
    trigger on a partition may not move the row it routes)."""
    if not expanded.startswith("postgresql"):
        pytest.skip("a rolling deploy (two releases on one database) needs PostgreSQL")
    _backfill(expanded)
    run_migrations("0019", database_url=expanded)
    order_id, shop_id = _run(_rows(expanded, sa.select(orders.c.id, orders.c.shop_id)))[0]
    old_line = _line(order_id, 9)
    del old_line["shop_id"]  # the previous release knows no such column
    _run(_execute(expanded, lines.insert().values(old_line)))
    assert _line_shops(expanded)[old_line["id"]] == (shop_id, shop_id)


def test_a_dry_run_counts_and_changes_nothing(expanded: str) -> None:
    before = _line_shops(expanded)
    out = _cli(["backfill", NAME, "--dry-run", "--batch-size", "50", "--rate", "40"], expanded)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Dry run: {LINES} row(s) to change in 3 batch(es) of 50, about 0m03s" in out.stdout
    assert "Nothing was changed." in out.stdout
    assert _line_shops(expanded) == before
    assert _progress(expanded) is None  # not even a progress row


def test_a_killed_backfill_resumes_where_it_stopped_with_exact_results(expanded: str) -> None:
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "backfill", NAME, "--batch-size", "5", "--rate", "40"],
        env=cli_env(expanded),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            progress = _progress(expanded)
            if progress is not None and progress["rows_done"] >= 20:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # a crash: no clean-up of any kind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _progress(expanded)
    assert killed is not None
    filled = [line for line, _ in _line_shops(expanded).values() if line is not None]
    assert 20 <= killed["rows_done"] < LINES
    assert killed["finished_at"] is None
    # the progress row commits with its batch: it counts exactly the rows written
    assert killed["rows_done"] == len(filled)

    steps: list[Progress] = []
    report = _backfill(expanded, batch_size=7, on_progress=steps.append)
    assert report.rows_changed == LINES - killed["rows_done"]
    assert report.rows_done == LINES
    assert steps[-1].done == steps[-1].total == LINES
    assert all(line == order for line, order in _line_shops(expanded).values())
    final = _progress(expanded)
    assert final is not None
    assert final["rows_done"] == LINES
    assert final["finished_at"] is not None

    again = _backfill(expanded)
    assert again.rows_changed == 0  # done is done


def test_the_runner_waits_while_the_replica_lags(expanded: str) -> None:
    """Lag above --max-lag pauses the batches until it falls back under it."""
    lags = iter([12.0, 8.0, 0.5])
    pauses: list[float] = []
    seen: list[Progress] = []

    async def probe(_engine: Any) -> float | None:
        return next(lags, None)

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    report = _backfill(
        expanded,
        batch_size=LINES,
        max_lag=5.0,
        lag_probe=probe,
        sleep=pause,
        on_progress=seen.append,
    )
    assert pauses == [1.0, 1.0]  # two probes over the limit, then the batches ran
    assert [s.waiting_for_lag for s in seen[:2]] == [12.0, 8.0]
    assert report.rows_done == LINES
    assert report.seconds_waiting_for_lag == 2.0


def test_replica_lag_is_none_without_a_streaming_replica(empty_database: str) -> None:
    """No streaming replica (or SQLite): no throttle. With one (PostgreSQL), the lag the
    primary reports for it, in seconds."""
    lag = _on(empty_database, replica_lag)
    if not empty_database.startswith("postgresql"):
        assert lag is None
        return
    replicas = _run(_rows(empty_database, sa.text("SELECT count(*) FROM pg_stat_replication")))
    if replicas[0][0] == 0:
        assert lag is None
    else:
        assert isinstance(lag, float)
        assert lag >= 0


def test_an_unknown_backfill_is_a_configuration_error(empty_database: str) -> None:
    out = _cli(["backfill", "no-such-thing"], empty_database)
    assert out.returncode == 2
    assert "registered: " in out.stderr
    assert NAME in out.stderr.split("registered: ")[1].split(", ")
