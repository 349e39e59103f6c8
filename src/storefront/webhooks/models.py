from __future__ import annotations

import uuid

from sqlalchemy import JSON, ForeignKey, Index, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, TimestampMixin, new_id


class WebhookEndpoint(TimestampMixin, Base):
    """A shop's subscription: where to POST which events, and the secret that signs them."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_shop_id", "shop_id"),
        PrimaryKeyConstraint("shop_id", "id"),  # revisions 0014-0016
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    shop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    # the signing secret, sealed at rest (SecretBox): shown to the owner once, at creation
    secret_sealed: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    # why delivery stopped, when it did (e.g. the receiver answered 410 Gone)
    disabled_reason: Mapped[str | None] = mapped_column(String(100))
