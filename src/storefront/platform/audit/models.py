"""The audit log's one table: append-only, each row hash-chained to the one before it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storefront.platform.db import Base

# no foreign keys on purpose: an entry outlives whatever it names (a deleted shop, an
# erased user), and the application never joins through it
ACTOR_TYPES = ("user", "anonymous", "system")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_shop_id_seq", "shop_id", "seq"),
        Index("ix_audit_events_actor_id", "actor_id"),
        Index("ix_audit_events_object_type_object_id", "object_type", "object_id"),
    )

    # gapless: assigned under the append lock as the previous entry's seq + 1
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    shop_id: Mapped[uuid.UUID | None]
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
