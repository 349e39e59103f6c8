from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, new_id, utcnow


class ExportStatus(StrEnum):
    queued = "queued"
    running = "running"
    ready = "ready"
    failed = "failed"
    expired = "expired"


class DataExport(Base):
    """A requested copy of everything held about a user; the archive is sealed with the
    user's data key, so a dump can't read it and erasure shreds it."""

    __tablename__ = "data_exports"
    __table_args__ = (
        Index("ix_data_exports_user_id", "user_id"),
        Index("ix_data_exports_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[ExportStatus] = mapped_column(
        Enum(ExportStatus, native_enum=False, length=16, create_constraint=True, name="status"),
        default=ExportStatus.queued,
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # set at request time (a lost job's row expires too), reset when the archive is ready
    expires_at: Mapped[datetime]
    archive_sealed: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)


class ConsentRecord(Base):
    """One consent decision; append-only: the current state is the latest per purpose."""

    __tablename__ = "consent_records"
    __table_args__ = (
        Index(
            "ix_consent_records_user_id_purpose_recorded_at", "user_id", "purpose", "recorded_at"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(64))
    granted: Mapped[bool]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(32))  # "api", "erasure"
