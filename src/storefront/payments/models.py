"""A payment of an order through the provider, and the provider events already handled.

The states and why money is never taken twice: docs/decisions/0137-payment-state-machine.md.
"""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, TimestampMixin, new_id, utcnow


class PaymentStatus(StrEnum):
    # written and committed before the provider is called; the outcome is not known yet
    processing = "processing"
    succeeded = "succeeded"
    # declined, or never charged (the provider has no PaymentIntent for it, or cancelled it)
    failed = "failed"
    refunded = "refunded"


# at most one of these per order (the partial unique index below)
LIVE_STATUSES = (PaymentStatus.processing, PaymentStatus.succeeded)
LIVE_WHERE = "status IN ('processing', 'succeeded')"


class Payment(TimestampMixin, Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_cents >= 0", name="amount_non_negative"),
        Index("ix_payments_shop_id_order_id_id", "shop_id", "order_id", "id"),
        Index("ix_payments_order_id", "order_id"),
        PrimaryKeyConstraint("shop_id", "id"),  # revisions 0014-0016
        # money is never taken twice: one live (processing or succeeded) payment per order
        # (shop_id first, as a table partitioned by shop requires: revisions 0017/0018; a
        # payment's order is in its shop, so it is the same guarantee as on order_id alone)
        Index(
            "uq_payments_shop_id_order_id_live",
            "shop_id",
            "order_id",
            unique=True,
            postgresql_where=text(LIVE_WHERE),
            sqlite_where=text(LIVE_WHERE),
        ),
        # the reconciliation job's scan: payments whose outcome is not known yet
        Index(
            "ix_payments_processing_updated_at",
            "updated_at",
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
        # a PaymentIntent id once per shop (the provider makes them unique anyway), and the
        # provider webhook's lookup by it, which names no shop (revisions 0017/0018)
        Index(
            "uq_payments_shop_id_provider_reference", "shop_id", "provider_reference", unique=True
        ),
        Index("ix_payments_provider_reference", "provider_reference"),
        # the order by its shop key (revision 0015)
        ForeignKeyConstraint(
            ["shop_id", "order_id"],
            ["orders.shop_id", "orders.id"],
            name="fk_payments_shop_id_order_id_orders",
            ondelete="RESTRICT",
        ),
    )

    # also the provider's idempotency key and the PaymentIntent's metadata["payment_id"]
    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    shop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shops.id", ondelete="RESTRICT"))
    order_id: Mapped[uuid.UUID] = mapped_column()
    status: Mapped[PaymentStatus] = mapped_column(
        Enum(PaymentStatus, native_enum=False, length=16, create_constraint=True, name="status"),
        default=PaymentStatus.processing,
    )
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # the provider's payment-method id the customer gave (kept to resume an uncertain attempt)
    payment_method: Mapped[str] = mapped_column(String(255))
    # the provider's PaymentIntent id, once known
    provider_reference: Mapped[str | None] = mapped_column(String(255), default=None)
    # why it failed (the provider's decline code, or our reason)
    failure_code: Mapped[str | None] = mapped_column(String(100), default=None)
    # who may call the provider for it until when (a lease: one caller at a time)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class ProviderEvent(Base):
    """A provider webhook event already processed: a replay (same event id) is a no-op."""

    __tablename__ = "payment_provider_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
