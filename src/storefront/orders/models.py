from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storefront.kit.db import Base, TimestampMixin, new_id


class OrderStatus(StrEnum):
    pending = "pending"
    paid = "paid"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    # the payment window passed while pending: stock released, terminal (decision 0118)
    expired = "expired"


class Order(TimestampMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_cents >= 0", name="total_non_negative"),
        Index("ix_orders_shop_id_id", "shop_id", "id"),
        # the shop key, what lines and payments reference (revisions 0014-0016, decision
        # 0202): the identity is (shop_id, id), session.get takes both
        PrimaryKeyConstraint("shop_id", "id"),
        Index("ix_orders_shop_id_status_id", "shop_id", "status", "id"),
        Index("ix_orders_shop_id_customer_id_id", "shop_id", "customer_id", "id"),
        Index("ix_orders_customer_id", "customer_id"),
        # the expiry job's scan: pending orders only, by when their payment window ends
        Index(
            "ix_orders_pending_expires_at",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    shop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shops.id", ondelete="RESTRICT"))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    status: Mapped[OrderStatus] = mapped_column(
        Enum(OrderStatus, native_enum=False, length=16, create_constraint=True, name="status"),
        default=OrderStatus.pending,
    )
    currency: Mapped[str] = mapped_column(String(3))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    # the address (with the phone number) as JSON, sealed with the customer's data key
    shipping_address_sealed: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)
    # set once the confirmation email went out: a redelivered job does not mail it again
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # when an unpaid (pending) order expires and releases its stock; None on orders placed
    # before expiry existed (they expire at created_at + the payment window)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)

    # joined on the shop too: loading an order's lines names the shop (decision 0170), and
    # the lines' foreign key is (shop_id, order_id) since revision 0015
    lines: Mapped[list[OrderLine]] = relationship(
        primaryjoin="and_(Order.shop_id == foreign(OrderLine.shop_id), "
        "Order.id == foreign(OrderLine.order_id))",
        lazy="raise",
        cascade="all, delete-orphan",
        order_by="OrderLine.position",
    )


class OrderLine(Base):
    """A snapshot of what was bought, at the price it was bought for."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_order_lines_order_id", "order_id"),
        Index("ix_order_lines_product_id", "product_id"),
        PrimaryKeyConstraint("shop_id", "id"),  # revisions 0014-0016
        # the order by its shop key (revision 0015)
        ForeignKeyConstraint(
            ["shop_id", "order_id"],
            ["orders.shop_id", "orders.id"],
            name="fk_order_lines_shop_id_order_id_orders",
            ondelete="CASCADE",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column()
    # the order's shop, on the line too: every tenant-owned row carries its shop (the key the
    # schema is partitioned and distributed by; decision 0155, migrations 0012 and 0013)
    shop_id: Mapped[uuid.UUID] = mapped_column()
    position: Mapped[int]
    # no foreign key into the catalog's table: orders keep their own snapshot
    product_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int]
    line_total_cents: Mapped[int] = mapped_column(BigInteger)
