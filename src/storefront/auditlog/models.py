"""The audit log's one table: append-only, each row hash-chained to the one before it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base

# no foreign keys on purpose: an entry outlives whatever it names (a deleted shop, an
# erased user), and the application never joins through it
ACTOR_TYPES = ("user", "anonymous", "system")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_shop_id_seq", "shop_id", "seq"),
        Index("ix_audit_events_actor_id", "actor_id"),
        Index("ix_audit_events_object_type_object_id", "object_type", "object_id"),
        # the retention job's scan: only entries that still hold an address (decision 0117)
        Index(
            "ix_audit_events_address_expiry",
            "occurred_at",
            postgresql_where=text("personal_salt IS NOT NULL"),
            sqlite_where=text("personal_salt IS NOT NULL"),
        ),
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
    # how ``hash`` is computed (auditlog/chain.py); 1 for entries older than 0009
    chain_version: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    # the personal fields (``client_address``) are covered by the hash only through
    # ``personal_commitment`` = HMAC(personal_salt, fields); erasure nulls fields and salt
    personal_salt: Mapped[str | None] = mapped_column(String(32))
    personal_commitment: Mapped[str | None] = mapped_column(String(64))
