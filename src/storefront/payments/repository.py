"""Payment queries: every statement scoped to one shop, except the reconciliation scan and
the webhook's lookup by provider reference (cross-shop by nature)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.db import utcnow
from storefront.payments.models import LIVE_STATUSES, Payment, PaymentStatus


class PaymentRepository:
    def __init__(self, session: AsyncSession, shop_id: uuid.UUID) -> None:
        self.session = session
        self.shop_id = shop_id

    async def list_for_order(self, order_id: uuid.UUID) -> list[Payment]:
        rows = await self.session.scalars(
            select(Payment)
            .where(Payment.shop_id == self.shop_id, Payment.order_id == order_id)
            .order_by(Payment.id)
        )
        return list(rows)

    async def list_for_orders(self, order_ids: Sequence[uuid.UUID]) -> list[Payment]:
        """The payments of the shop's orders among ``order_ids``, oldest first (one
        statement)."""
        if not order_ids:
            return []
        rows = await self.session.scalars(
            select(Payment)
            .where(Payment.shop_id == self.shop_id, Payment.order_id.in_(order_ids))
            .order_by(Payment.id)
        )
        return list(rows)

    async def live_for_order(self, order_id: uuid.UUID) -> Payment | None:
        return await self.session.scalar(
            select(Payment).where(
                Payment.shop_id == self.shop_id,
                Payment.order_id == order_id,
                Payment.status.in_(LIVE_STATUSES),
            )
        )

    async def get(self, payment_id: uuid.UUID, *, fresh: bool = False) -> Payment | None:
        """The shop's payment; ``fresh``: the committed row now, over the session's object."""
        stmt = select(Payment).where(Payment.shop_id == self.shop_id, Payment.id == payment_id)
        if fresh:
            stmt = stmt.execution_options(populate_existing=True)
        return await self.session.scalar(stmt)

    async def claim(self, payment_id: uuid.UUID, *, now: datetime, until: datetime) -> bool:
        """Take the payment for one provider conversation (compare-and-set on the lease):
        False when another caller holds it."""
        result = await self.session.execute(
            update(Payment)
            .where(
                Payment.shop_id == self.shop_id,
                Payment.id == payment_id,
                or_(Payment.claimed_until.is_(None), Payment.claimed_until <= now),
            )
            .values(claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, payment_id: uuid.UUID) -> None:
        """End the lease early (the conversation with the provider is over)."""
        await self.session.execute(
            update(Payment)
            .where(Payment.shop_id == self.shop_id, Payment.id == payment_id)
            .values(claimed_until=None)
            .execution_options(synchronize_session=False)
        )

    async def settle(
        self,
        payment_id: uuid.UUID,
        *,
        allowed_from: tuple[PaymentStatus, ...],
        to: PaymentStatus,
        **values: Any,
    ) -> bool:
        """Compare-and-set the status (and release the lease); False when it was not in
        ``allowed_from`` (someone else settled it first)."""
        now = utcnow()
        result = await self.session.execute(
            update(Payment)
            .where(
                Payment.shop_id == self.shop_id,
                Payment.id == payment_id,
                Payment.status.in_(allowed_from),
            )
            .values(status=to, claimed_until=None, settled_at=now, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_reference(self, payment_id: uuid.UUID, reference: str) -> None:
        await self.session.execute(
            update(Payment)
            .where(Payment.shop_id == self.shop_id, Payment.id == payment_id)
            .values(provider_reference=reference, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def find_by_reference(session: AsyncSession, reference: str) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.provider_reference == reference))


async def find_by_id(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.id == payment_id))


async def stuck(session: AsyncSession, *, older_than: datetime, limit: int) -> list[Payment]:
    """Payments still ``processing`` with no change since ``older_than`` (the webhook or
    the synchronous answer never came), oldest first."""
    rows = await session.scalars(
        select(Payment)
        .where(Payment.status == PaymentStatus.processing, Payment.updated_at <= older_than)
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return list(rows)
