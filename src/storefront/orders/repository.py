"""Order queries. The base statement scopes to the shop and, for customers, to their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from sqlalchemy import Select, Uuid, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.platform.db import utcnow

_EXPORT_ORDER_COLUMNS = (
    Order.id,
    Order.shop_id,
    Order.customer_id,
    Order.status,
    Order.currency,
    Order.total_cents,
    Order.shipping_address_sealed,
    Order.created_at,
    Order.updated_at,
)
_EXPORT_LINE_COLUMNS = (
    OrderLine.order_id,
    OrderLine.product_id,
    OrderLine.sku,
    OrderLine.name,
    OrderLine.unit_price_cents,
    OrderLine.quantity,
    OrderLine.line_total_cents,
)

_UUID_ARRAY = ARRAY(Uuid())

# (order row, its line rows) for each order of a batch
ExportBatch = list[tuple[Any, list[Any]]]
# an order's id -> its line rows, in position order
LinesByOrder = dict[uuid.UUID, list[Any]]


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

    async def mark_confirmation_sent(self, order_id: uuid.UUID) -> bool:
        """Record that the confirmation email went out; False if already recorded. Leaves
        ``updated_at`` and ``version`` alone: the order itself did not change."""
        stmt = (
            update(Order)
            .where(Order.shop_id == self.shop_id, Order.id == order_id)
            .where(Order.confirmation_sent_at.is_(None))
            .values(confirmation_sent_at=utcnow(), updated_at=Order.updated_at)
        )
        result: Any = await self.session.execute(stmt)
        return bool(result.rowcount)

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

    async def list_rows(
        self, *, limit: int, after: uuid.UUID | None, status: OrderStatus | None
    ) -> ExportBatch:
        """A page of orders with their lines, as plain rows: the same two queries as
        ``list`` (orders, then the lines of those orders), without building ORM objects."""
        stmt = self._base().with_only_columns(*_EXPORT_ORDER_COLUMNS)
        if status is not None:
            stmt = stmt.where(Order.status == status)
        if after is not None:
            stmt = stmt.where(Order.id > after)
        orders = (await self.session.execute(stmt.order_by(Order.id).limit(limit))).all()
        if not orders:
            return []
        by_order = await self._lines_of([row.id for row in orders])
        return [(order, by_order.get(order.id, [])) for order in orders]

    async def _lines_of(self, ids: Sequence[uuid.UUID]) -> LinesByOrder:
        if self.session.get_bind().dialect.name == "postgresql":
            # one array parameter: an IN list is re-rendered on every execution, one bound
            # parameter (and its cast) per id, which costs more CPU than the query itself
            of_ids = OrderLine.order_id == any_(bindparam("order_ids", ids, type_=_UUID_ARRAY))
        else:
            of_ids = OrderLine.order_id.in_(ids)
        lines = await self.session.execute(
            select(*_EXPORT_LINE_COLUMNS)
            .where(of_ids)
            .order_by(OrderLine.order_id, OrderLine.position)
        )
        by_order: LinesByOrder = {}
        for line in lines:
            by_order.setdefault(line.order_id, []).append(line)
        return by_order

    async def stream_batches(
        self, *, status: OrderStatus | None, after: uuid.UUID | None, batch_size: int
    ) -> AsyncGenerator[ExportBatch, None]:
        """Every matching order with its lines, in id order, ``batch_size`` orders at a time.

        The orders come from one server-side cursor (``stream`` + ``yield_per``), so memory
        holds one batch whatever the total; the lines of a batch are read in one query.
        Plain rows, not ORM objects: nothing accumulates in the session.
        """
        stmt = self._base().with_only_columns(*_EXPORT_ORDER_COLUMNS)
        if status is not None:
            stmt = stmt.where(Order.status == status)
        if after is not None:
            stmt = stmt.where(Order.id > after)
        stmt = stmt.order_by(Order.id)
        result = await self.session.stream(stmt, execution_options={"yield_per": batch_size})
        try:
            async for orders in result.partitions():
                by_order = await self._lines_of([row.id for row in orders])
                yield [(order, by_order.get(order.id, [])) for order in orders]
        finally:
            await result.close()

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
