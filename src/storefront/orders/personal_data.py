"""What the orders domain holds about a customer, for the GDPR export (docs/privacy.md)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storefront.orders.models import Order
from storefront.orders.serialise import orders_out
from storefront.vault import PersonalDataVault


async def orders_of_customer(
    session: AsyncSession, customer_id: uuid.UUID, *, vault: PersonalDataVault
) -> list[dict[str, Any]]:
    """Every order the customer placed, in any shop, oldest first, with its lines and the
    shipping address decrypted."""
    stmt = (
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.id)
        .options(selectinload(Order.lines))
    )
    orders = (await session.execute(stmt)).scalars().all()
    return [o.model_dump(mode="json") for o in await orders_out(session, orders, vault=vault)]
