from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class SalesDayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    day: date
    currency: str
    orders_placed: int = Field(description="Orders placed that day.")
    placed_cents: int = Field(description="Their totals, in minor units.")
    orders_paid: int = Field(description="Payments confirmed that day.")
    revenue_cents: int = Field(description="Amounts paid that day, in minor units.")
    refunds: int = Field(description="Refunds made that day.")
    refunded_cents: int = Field(description="Amounts refunded that day, in minor units.")
    orders_cancelled: int
    orders_expired: int


class SalesOut(BaseModel):
    shop_id: uuid.UUID
    from_: date = Field(serialization_alias="from")
    to: date
    days: list[SalesDayOut] = Field(
        description="One entry per day and currency with activity, oldest first."
    )
