from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from storefront.kit.inputs import ONE_LINE, STORABLE, StrictInt
from storefront.orders.models import OrderStatus

Text100 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), ONE_LINE, STORABLE
]
MAX_LINES = 100


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text100
    line1: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        ONE_LINE,
        STORABLE,
    ]
    line2: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), ONE_LINE, STORABLE]
        | None
    ) = None
    city: Text100
    postal_code: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=20),
        ONE_LINE,
        STORABLE,
    ]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), STORABLE]
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{5,32}$"), STORABLE] | None = (
        None
    )


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[StrictInt, Field(ge=1, le=1000)]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]
    shipping_address: AddressIn

    @field_validator("lines")
    @classmethod
    def _one_line_per_product(cls, lines: list[OrderLineIn]) -> list[OrderLineIn]:
        ids = [line.product_id for line in lines]
        if len(set(ids)) != len(ids):
            raise ValueError("each product may appear on one line only")
        return lines


class OrderLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: uuid.UUID
    sku: str
    name: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    shop_id: uuid.UUID
    customer_id: uuid.UUID | None
    status: OrderStatus
    currency: str
    total_cents: int
    lines: list[OrderLineOut]
    # None (and customer_erased) once the customer was erased: their data key is destroyed
    shipping_address: dict[str, Any] | None
    customer_erased: bool = False
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(
        default=None,
        description="A pending order not paid by then becomes `expired` and its stock goes "
        "back on sale (`pending -> paid | cancelled | expired`; `expired` is terminal: "
        "cancelling or paying it is 409). Null on orders placed before expiry existed: "
        "they expire at `created_at` + the payment window.",
    )
