"""Queries on the privacy domain's own tables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.privacy.models import ConsentRecord, DataExport


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

    def add_all(self, records: Sequence[ConsentRecord]) -> None:
        self.session.add_all(records)


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, export: DataExport) -> DataExport:
        self.session.add(export)
        await self.session.flush()
        return export

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
