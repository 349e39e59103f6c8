"""Queries on the privacy domain's own tables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.db import lock_key
from storefront.privacy.models import ConsentRecord, DataExport, ExportStatus


class ConsentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def history(self, user_id: uuid.UUID) -> Sequence[ConsentRecord]:
        """Every decision of the user, oldest first."""
        stmt = (
            select(ConsentRecord)
            .where(ConsentRecord.user_id == user_id)
            .order_by(ConsentRecord.recorded_at, ConsentRecord.id)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def latest(self, user_id: uuid.UUID, purposes: Sequence[str]) -> list[ConsentRecord]:
        """The latest decision per purpose (one indexed lookup each), for purposes decided."""
        found: list[ConsentRecord] = []
        for purpose in purposes:
            stmt = (
                select(ConsentRecord)
                .where(ConsentRecord.user_id == user_id, ConsentRecord.purpose == purpose)
                .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
                .limit(1)
            )
            record = (await self.session.execute(stmt)).scalar_one_or_none()
            if record is not None:
                found.append(record)
        return found

    async def get(self, user_id: uuid.UUID, record_id: uuid.UUID) -> ConsentRecord | None:
        stmt = select(ConsentRecord).where(
            ConsentRecord.user_id == user_id, ConsentRecord.id == record_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(
        self, user_id: uuid.UUID, limit: int, before: ConsentRecord | None
    ) -> tuple[list[ConsentRecord], bool]:
        """Up to ``limit`` of the newest decisions (older than ``before``), oldest first, and
        whether older ones remain."""
        stmt = select(ConsentRecord).where(ConsentRecord.user_id == user_id)
        if before is not None:
            stmt = stmt.where(
                tuple_(ConsentRecord.recorded_at, ConsentRecord.id)
                < tuple_(literal(before.recorded_at), literal(before.id, ConsentRecord.id.type))
            )
        stmt = stmt.order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        return list(reversed(rows[:limit])), len(rows) > limit

    def add_all(self, records: Sequence[ConsentRecord]) -> None:
        self.session.add_all(records)


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, export: DataExport) -> DataExport:
        self.session.add(export)
        await self.session.flush()
        return export

    async def lock_user(self, user_id: uuid.UUID) -> None:
        """Serialise the user's export requests (counting them before adding one)."""
        await lock_key(self.session, f"storefront.exports.user:{user_id}")

    async def count_live(self, user_id: uuid.UUID, now: datetime) -> int:
        """The user's exports that are not over: queued, running or ready and unexpired."""
        stmt = select(func.count()).where(
            DataExport.user_id == user_id,
            DataExport.expires_at > now,
            DataExport.status.in_((ExportStatus.queued, ExportStatus.running, ExportStatus.ready)),
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def get_for(self, user_id: uuid.UUID, export_id: uuid.UUID) -> DataExport | None:
        """The user's own export only: someone else's id is simply not found."""
        stmt = select(DataExport).where(DataExport.id == export_id, DataExport.user_id == user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, export_id: uuid.UUID) -> DataExport | None:
        return await self.session.get(DataExport, export_id)

    async def delete_for_user(self, user_id: uuid.UUID) -> int:
        result = await self.session.execute(
            delete(DataExport)
            .where(DataExport.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0))

    async def list_for(self, user_id: uuid.UUID) -> Sequence[DataExport]:
        stmt = (
            select(DataExport)
            .where(DataExport.user_id == user_id)
            .order_by(DataExport.requested_at, DataExport.id)
        )
        return (await self.session.execute(stmt)).scalars().all()
