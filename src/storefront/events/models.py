"""The stored event stream (also the events' outbox) and the consumers' inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, new_id, utcnow

MAX_ERROR_LENGTH = 1000


class DomainEvent(Base):
    """One domain event, written in the transaction of the change it reports and kept: the
    rows are the event stream that a projection is rebuilt from. ``next_attempt_at`` is set
    while the event still has to be relayed to the broker, NULL once it was."""

    __tablename__ = "domain_events"
    __table_args__ = (
        Index("ix_domain_events_next_attempt_at", "next_attempt_at"),
        Index("ix_domain_events_shop_id", "shop_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)  # time-ordered
    type: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    shop_id: Mapped[uuid.UUID | None]
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_LENGTH))


class InboxEntry(Base):
    """An event a consumer has handled: (consumer, event id) is written in the transaction
    of the handling, so a redelivered event finds it and is acknowledged without effect."""

    __tablename__ = "event_inbox"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)
