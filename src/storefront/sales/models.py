"""The sales projection: one row per shop, day (UTC) and currency, written only by the
projection's event consumer (never by the domains whose events it reads)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base


class SalesDay(Base):
    __tablename__ = "sales_daily"

    shop_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders_placed: Mapped[int] = mapped_column(default=0)
    placed_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    orders_paid: Mapped[int] = mapped_column(default=0)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds: Mapped[int] = mapped_column(default=0)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    orders_cancelled: Mapped[int] = mapped_column(default=0)
    orders_expired: Mapped[int] = mapped_column(default=0)
