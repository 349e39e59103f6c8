from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from storefront.kit.inputs import STORABLE


class WebhookEvent(StrEnum):
    order_placed = "order.placed"
    order_cancelled = "order.cancelled"
    order_expired = "order.expired"  # unpaid within the payment window (decision 0118)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[
        str, StringConstraints(min_length=8, max_length=2048, strip_whitespace=True), STORABLE
    ]
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(WebhookEvent))]


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    shop_id: uuid.UUID
    url: str
    events: list[WebhookEvent]
    is_active: bool
    disabled_reason: str | None
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    # the Standard Webhooks signing secret ("whsec_..."); returned once, never again
    secret: str
