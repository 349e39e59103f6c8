from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, TimestampMixin, new_id


class ProductStatus(StrEnum):
    active = "active"
    archived = "archived"


class Product(TimestampMixin, Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("shop_id", "sku"),
        PrimaryKeyConstraint("shop_id", "id"),  # revisions 0014-0016
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("price_cents >= 0", name="price_non_negative"),
        # keyset listing of a shop's active catalog, with and without a category filter
        Index(
            "ix_products_active_shop_id_id",
            "shop_id",
            "id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "ix_products_active_shop_id_category_id",
            "shop_id",
            "category",
            "id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        # ?q= substring search: trigram GIN index (PostgreSQL only; created by the migration)
        Index(
            "ix_products_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
            info={"dialects": ("postgresql",)},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    shop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int]
    category: Mapped[str] = mapped_column(String(64))
    status: Mapped[ProductStatus] = mapped_column(
        Enum(ProductStatus, native_enum=False, length=16, create_constraint=True, name="status"),
        default=ProductStatus.active,
    )
    version: Mapped[int] = mapped_column(default=1)
