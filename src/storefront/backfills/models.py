"""Where each backfill stands (``storefront backfill``): one row per backfill, written in the
same transaction as the batch it describes, so a crash never loses or repeats a batch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base


class BackfillProgress(Base):
    __tablename__ = "backfill_progress"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # the key of the last row the last committed batch reached (None: not started)
    position: Mapped[str | None] = mapped_column(String(64))
    rows_done: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
