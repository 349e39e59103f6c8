"""Master-key rotation: re-wrap every data key under the current master version, online.

Only the wrapping changes (the data keys themselves, and so every ciphertext, stay as they
are), so the application keeps running throughout: every process must already hold the new
master key first in its configuration and the old one after it. Each batch is its own short
transaction; on PostgreSQL its rows are locked ``FOR UPDATE SKIP LOCKED`` (two rotations, or
a rotation and an erasure, never wait on each other's rows). A run picks exactly the rows
whose master version is not the current one, so an interrupted rotation resumes where it
stopped by running it again.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.auditlog import record
from storefront.kit.db import utcnow
from storefront.kit.master_keys import KeyProvider
from storefront.vault.envelope import DataKeyRow, key_context

ROTATED_ACTION = "keys.master_rotated"


@dataclass(frozen=True, slots=True)
class RotationResult:
    master_version: str
    rewrapped: int
    batches: int
    remaining: int  # rows still under another version (locked by someone else, or new)


def _stale(current: str) -> ColumnElement[bool]:
    return and_(
        DataKeyRow.destroyed_at.is_(None),
        DataKeyRow.wrapped_key.is_not(None),
        DataKeyRow.master_version != current,
    )


async def pending(sessionmaker: async_sessionmaker[AsyncSession], provider: KeyProvider) -> int:
    """How many data keys are not wrapped under the current master version."""
    async with sessionmaker() as session, session.begin():
        count = await session.scalar(
            select(func.count()).select_from(DataKeyRow).where(_stale(provider.current_version))
        )
    return int(count or 0)


async def _rewrap_batch(
    session: AsyncSession,
    provider: KeyProvider,
    *,
    after: uuid.UUID | None,
    batch_size: int,
) -> list[uuid.UUID]:
    """Re-wrap up to ``batch_size`` stale keys after ``after``; the subjects it did."""
    current = provider.current_version
    stmt = (
        select(DataKeyRow.subject_id, DataKeyRow.wrapped_key, DataKeyRow.master_version)
        .where(_stale(current))
        .order_by(DataKeyRow.subject_id)
        .limit(batch_size)
    )
    if after is not None:
        stmt = stmt.where(DataKeyRow.subject_id > after)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = (await session.execute(stmt)).all()
    if not rows:
        return []
    now = utcnow()
    values = []
    for row in rows:
        context = key_context(row.subject_id)
        data_key = provider.unwrap(
            base64.b64decode(row.wrapped_key), version=row.master_version, context=context
        )
        version, wrapped = provider.wrap(data_key, context=context)
        values.append(
            {
                "b_subject": row.subject_id,
                "b_old": row.master_version,
                "b_wrapped": base64.b64encode(wrapped).decode(),
                "b_version": version,
            }
        )
    # compare-and-set on the version read: a row changed since (erased) is left alone;
    # a Core statement (executemany), not the ORM's bulk update by primary key
    table = cast(Table, DataKeyRow.__table__)
    await session.execute(
        update(table)
        .where(
            table.c.subject_id == bindparam("b_subject"),
            table.c.master_version == bindparam("b_old"),
            table.c.destroyed_at.is_(None),
        )
        .values(
            wrapped_key=bindparam("b_wrapped"),
            master_version=bindparam("b_version"),
            rotated_at=now,
        ),
        values,
    )
    return [row.subject_id for row in rows]


async def rotate_master(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: KeyProvider,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> RotationResult:
    """Re-wrap every stale data key under ``provider.current_version``, ``batch_size`` per
    transaction; ``on_batch(count)`` after each committed batch (a progress bar). Records
    ``keys.master_rotated`` (counts only) in the audit log when done."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    after: uuid.UUID | None = None
    rewrapped = batches = 0
    while True:
        async with sessionmaker() as session, session.begin():
            done = await _rewrap_batch(session, provider, after=after, batch_size=batch_size)
        if not done:
            break
        after = done[-1]
        rewrapped += len(done)
        batches += 1
        if on_batch is not None:
            on_batch(len(done))
    remaining = await pending(sessionmaker, provider)
    async with sessionmaker() as session, session.begin():
        record(
            session,
            ROTATED_ACTION,
            object_type="master_key",
            object_id=provider.current_version,
            details={"rewrapped": rewrapped, "batches": batches, "remaining": remaining},
        )
    return RotationResult(provider.current_version, rewrapped, batches, remaining)
