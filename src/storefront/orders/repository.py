"""Order queries. The base statement scopes to the shop and, for customers, to their own."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storefront.orders.models import Order, OrderStatus
from storefront.platform.db import utcnow


class OrderRepository:
    def __init__(
        self, session: AsyncSession, shop_id: uuid.UUID, *, customer_id: uuid.UUID | None
    ) -> None:
        """``customer_id=None`` means staff scope: every order of the shop."""
        self.session = session
        self.shop_id = shop_id
        self.customer_id = customer_id

    def _base(self) -> Select[Order]:
        stmt = select(Order).where(Order.shop_id == self.shop_id)
        if self.customer_id is not None:
            stmt = stmt.where(Order.customer_id == self.customer_id)
        return stmt

    async def add(self, order: Order) -> Order:
        self.session.add(order)
        await self.session.flush()
        return order

    async def get(self, order_id: uuid.UUID) -> Order | None:
        stmt = self._base().where(Order.id == order_id).options(selectinload(Order.lines))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def status_of(self, order_id: uuid.UUID) -> OrderStatus | None:
        """The committed status now (a column read, never the session's cached object)."""
        stmt = self._base().where(Order.id == order_id).with_only_columns(Order.status)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list(
        self, *, limit: int, after: uuid.UUID | None, status: OrderStatus | None
    ) -> Sequence[Order]:
        stmt = self._base()
        if status is not None:
            stmt = stmt.where(Order.status == status)
        if after is not None:
            stmt = stmt.where(Order.id > after)
        stmt = stmt.order_by(Order.id).limit(limit).options(selectinload(Order.lines))
        return (await self.session.execute(stmt)).scalars().all()

    async def transition(
        self, order_id: uuid.UUID, *, allowed_from: set[OrderStatus], to: OrderStatus
    ) -> bool:
        """Compare-and-set the status; False when the order is not in an allowed state."""
        result = await self.session.execute(
            update(Order)
            .where(
                Order.shop_id == self.shop_id,
                Order.id == order_id,
                Order.status.in_(allowed_from),
            )
            .values(status=to, version=Order.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
