from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from storefront.kit.inputs import STORABLE
from storefront.payments.models import PaymentStatus


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a provider payment-method id (Stripe's test ids such as pm_card_visa work outside
    # production); checked by the provider, so only its shape here
    payment_method: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,255}$"), STORABLE]


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    status: PaymentStatus
    amount_cents: int
    currency: str
    # the provider's PaymentIntent id (null until the provider has answered)
    provider_reference: str | None
    failure_code: str | None
    created_at: datetime
    updated_at: datetime
