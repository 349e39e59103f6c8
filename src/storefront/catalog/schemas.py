from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from storefront.catalog.models import ProductStatus
from storefront.kit.inputs import ONE_LINE, STORABLE, StrictInt

MAX_BULK_ITEMS = 1000
MAX_SKU_LENGTH = 64
MAX_CATEGORY_LENGTH = 64  # a product's category, and the listing's category filter
MAX_SEARCH_LENGTH = 100  # the listing's ``q``
Sku = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_SKU_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
    STORABLE,
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), ONE_LINE, STORABLE
]
Description = Annotated[str, StringConstraints(max_length=5000), STORABLE]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), STORABLE]
Category = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CATEGORY_LENGTH),
    ONE_LINE,
    STORABLE,
]
PriceCents = Annotated[StrictInt, Field(ge=0, le=100_000_000_000)]
Stock = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    description: Description = ""
    price_cents: PriceCents
    currency: Currency
    stock: Stock
    category: Category


class ProductPatch(BaseModel):
    """Only the listed fields may change; id, sku, version, status... are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    price_cents: PriceCents | None = None
    currency: Currency | None = None
    stock: Stock | None = None
    category: Category | None = None

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nulls(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be omitted, but not null")
        return value


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    shop_id: uuid.UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    stock: int
    category: str
    status: ProductStatus
    version: int
    created_at: datetime
    updated_at: datetime


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[ProductIn], Field(min_length=1, max_length=MAX_BULK_ITEMS)]

    @field_validator("items")
    @classmethod
    def _unique_skus(cls, items: list[ProductIn]) -> list[ProductIn]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku!r} appears more than once")
            seen.add(item.sku)
        return items


class BulkOut(BaseModel):
    created: int
    updated: int


class CategorySummary(BaseModel):
    category: str
    currency: str
    products: int = Field(description="active products in this category and currency")
    in_stock: int = Field(description="of which have stock left")
    units_in_stock: int
    min_price_cents: int
    max_price_cents: int


class CatalogSummaryOut(BaseModel):
    shop_id: uuid.UUID
    products: int = Field(description="active products in the shop")
    categories: list[CategorySummary]
