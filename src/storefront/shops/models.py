from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, TimestampMixin, new_id, utcnow


class Role(StrEnum):
    owner = "owner"
    staff = "staff"


class Shop(TimestampMixin, Base):
    __tablename__ = "shops"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    # what one customer may hold unpaid (decision 0118); None: the platform default
    max_line_quantity: Mapped[int | None] = mapped_column(default=None)
    max_order_units: Mapped[int | None] = mapped_column(default=None)
    max_pending_units: Mapped[int | None] = mapped_column(default=None)
    max_pending_stock_percent: Mapped[int | None] = mapped_column(default=None)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)

    shop_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, create_constraint=True, name="role")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
