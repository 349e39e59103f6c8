"""Running a backfill: batches of short transactions over a key, resumable, throttled.

Each batch is one transaction that reads the backfill's progress row (locked), changes the
next ``batch_size`` pending rows after the recorded position, and records the new position
and count: a crash (or a kill) loses at most the batch under way, which rolled back, and the
next run resumes exactly where the last commit left off. Two runs of the same backfill take
turns on the progress row instead of doing the same rows twice.

Between batches the runner waits while a streaming replica lags more than ``max_lag``
seconds (PostgreSQL: ``pg_stat_replication`` read on the primary; no replica, no wait) and
keeps to ``rate`` rows a second when one is given.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storefront.backfills.models import BackfillProgress
from storefront.kit.db import utcnow


@dataclass(frozen=True, slots=True)
class Backfill:
    """A registered data migration: which rows are pending, and how a batch of them changes.

    ``pending`` is a condition on ``table`` (true until a row is done); ``key`` is a unique,
    ordered column of it, or columns (a composite key, compared as a row value: an index on
    them in that order serves each batch); ``change`` builds the statement that does the rows
    whose keys it is given (values, or tuples for a composite key; it must leave them not
    pending). ``format_key`` and ``parse_key`` turn the last key done into the stored
    position (at most 64 characters) and back."""

    name: str
    description: str
    table: sa.TableClause
    key: sa.ColumnClause[Any] | tuple[sa.ColumnClause[Any], ...]
    pending: sa.ColumnElement[bool]
    change: Callable[[Sequence[Any]], sa.Executable]
    parse_key: Callable[[str], Any]
    # the revision whose contract waits for this backfill (for the operator's messages)
    contract_revision: str
    format_key: Callable[[Any], str] = str
    # run once the backfill has finished (its own transaction): raises when the result is
    # not what the contract needs (a copy's per-shop counts, say), with what to do about it
    verify: Callable[[sa.Connection], None] | None = None

    @property
    def key_columns(self) -> tuple[sa.ColumnClause[Any], ...]:
        return self.key if isinstance(self.key, tuple) else (self.key,)

    def after(self, position: str) -> sa.ColumnElement[bool]:
        """Rows whose key comes after the stored ``position``."""
        columns, value = self.key_columns, self.parse_key(position)
        if len(columns) == 1:
            after: sa.ColumnElement[bool] = columns[0] > value
            return after
        bound = (sa.bindparam(None, v, type_=c.type) for c, v in zip(columns, value, strict=True))
        return sa.tuple_(*columns) > sa.tuple_(*bound)


@dataclass(frozen=True, slots=True)
class Progress:
    done: int  # rows changed so far, every run included
    total: int  # done + still pending when this run started
    rate: float  # rows a second in this run
    eta_seconds: float | None  # None until a rate is known
    waiting_for_lag: float | None  # the replica lag being waited out, if any


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    dry_run: bool
    pending_at_start: int
    rows_changed: int  # by this run
    rows_done: int  # every run included
    batches: int  # by this run
    finished: bool
    seconds: float
    seconds_waiting_for_lag: float

    @property
    def batches_needed(self) -> int:  # for a dry run: how many batches the rows would take
        return self.batches


LagProbe = Callable[[AsyncEngine], Awaitable[float | None]]

REPLICA_LAG = sa.text(
    "SELECT count(*), COALESCE(max(EXTRACT(EPOCH FROM replay_lag)), 0) FROM pg_stat_replication"
)


async def replica_lag(engine: AsyncEngine) -> float | None:
    """The largest replay lag of the primary's streaming replicas, in seconds; None when it
    has none (or is SQLite). Read as the application's role, ``replay_lag`` needs the
    ``pg_monitor`` role to be visible; without it the lag reads 0 (docs/migrations.md)."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        count, lag = (await conn.execute(REPLICA_LAG)).one()
    return float(lag) if count else None


_progress: sa.Table = BackfillProgress.__table__  # type: ignore[assignment]


async def _count_pending(conn: AsyncConnection, backfill: Backfill) -> int:
    stmt = sa.select(sa.func.count()).select_from(backfill.table).where(backfill.pending)
    return int((await conn.execute(stmt)).scalar_one())


async def pending_rows(engine: AsyncEngine, backfill: Backfill) -> int:
    async with engine.connect() as conn:
        return await _count_pending(conn, backfill)


async def progress_of(engine: AsyncEngine, name: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(_progress).where(_progress.c.name == name))).first()
    return None if row is None else dict(row._mapping)


async def _start(engine: AsyncEngine, name: str) -> int:
    """The progress row (created on the first run); the rows it has done so far."""
    async with engine.begin() as conn:
        done = (
            await conn.execute(sa.select(_progress.c.rows_done).where(_progress.c.name == name))
        ).scalar_one_or_none()
        if done is not None:
            return int(done)
        now = utcnow()
        await conn.execute(
            _progress.insert().values(
                name=name, position=None, rows_done=0, batches=0, started_at=now, updated_at=now
            )
        )
        return 0


async def _batch(engine: AsyncEngine, backfill: Backfill, size: int) -> tuple[int, bool]:
    """One batch in one transaction: (rows changed, whether rows were left to look at)."""
    async with engine.begin() as conn:
        locked = sa.select(_progress.c.position).where(_progress.c.name == backfill.name)
        if conn.dialect.name == "postgresql":
            locked = locked.with_for_update()
        position = (await conn.execute(locked)).scalar_one()
        columns = backfill.key_columns
        keys_stmt = sa.select(*columns).where(backfill.pending)
        if position is not None:
            keys_stmt = keys_stmt.where(backfill.after(position))
        rows = (await conn.execute(keys_stmt.order_by(*columns).limit(size))).all()
        keys = [row[0] if len(columns) == 1 else tuple(row) for row in rows]
        if not keys:
            # the end of the key range; rows written behind the cursor since (by a writer
            # that does not fill them) send it round once more from the start
            again = position is not None and await _count_pending(conn, backfill) > 0
            await conn.execute(
                _progress.update()
                .where(_progress.c.name == backfill.name)
                .values(
                    position=None if again else position,
                    updated_at=utcnow(),
                    finished_at=None if again else utcnow(),
                )
            )
            return 0, again
        changed = (await conn.execute(backfill.change(keys))).rowcount
        await conn.execute(
            _progress.update()
            .where(_progress.c.name == backfill.name)
            .values(
                position=backfill.format_key(keys[-1]),
                rows_done=_progress.c.rows_done + changed,
                batches=_progress.c.batches + 1,
                updated_at=utcnow(),
                finished_at=None,
            )
        )
        return changed, True


async def run_backfill(
    engine: AsyncEngine,
    backfill: Backfill,
    *,
    batch_size: int = 1000,
    rate: float = 0.0,
    max_lag: float = 5.0,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    lag_probe: LagProbe = replica_lag,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Report:
    """Run (or resume) ``backfill`` to the end; ``rate`` rows a second at most (0: no
    limit); waits while the replica lags more than ``max_lag`` seconds. A dry run counts
    what would change and writes nothing, not even the progress row."""
    started = time.monotonic()
    pending = await pending_rows(engine, backfill)
    if dry_run:
        before = await progress_of(engine, backfill.name)
        return Report(
            name=backfill.name,
            dry_run=True,
            pending_at_start=pending,
            rows_changed=0,
            rows_done=0 if before is None else int(before["rows_done"]),
            batches=math.ceil(pending / batch_size),
            finished=pending == 0,
            seconds=time.monotonic() - started,
            seconds_waiting_for_lag=0.0,
        )
    done_before = await _start(engine, backfill.name)
    total = done_before + pending
    changed = batches = 0
    waited = 0.0
    working_since = time.monotonic()
    more = True
    while more:
        lag = await lag_probe(engine)
        if lag is not None and lag > max_lag:
            if on_progress is not None:
                on_progress(Progress(done_before + changed, total, 0.0, None, lag))
            pause = min(1.0, lag)
            await sleep(pause)
            waited += pause
            continue
        count, more = await _batch(engine, backfill, batch_size)
        if count:
            changed += count
            batches += 1
        total = max(total, done_before + changed)
        elapsed = time.monotonic() - working_since - waited
        if rate > 0 and more:
            ahead = changed / rate - elapsed  # seconds early against the allowed rate
            if ahead > 0:
                await sleep(ahead)
                elapsed += ahead
        speed = changed / elapsed if elapsed > 0 else 0.0
        left = total - done_before - changed
        eta = left / speed if speed > 0 else None
        if on_progress is not None and (count or not more):
            on_progress(Progress(done_before + changed, total, speed, eta, None))
    if backfill.verify is not None:
        async with engine.connect() as conn:
            await conn.run_sync(backfill.verify)
    return Report(
        name=backfill.name,
        dry_run=False,
        pending_at_start=pending,
        rows_changed=changed,
        rows_done=done_before + changed,
        batches=batches,
        finished=True,
        seconds=time.monotonic() - started,
        seconds_waiting_for_lag=waited,
    )
