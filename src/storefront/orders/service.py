"""Order rules: server-side totals, atomic stock reservation, legal transitions only."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.catalog.service import CatalogService
from storefront.identity.deps import Principal
from storefront.orders.export import OrderExport
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.orders.repository import ExportBatch, OrderRepository
from storefront.orders.schemas import OrderIn
from storefront.orders.sealing import seal_address
from storefront.orders.tasks import send_order_confirmation
from storefront.platform.audit import record
from storefront.platform.db import new_id
from storefront.platform.errors import InvalidTransition, NotFound, UnprocessableEntity
from storefront.platform.jobs import JobQueue
from storefront.platform.observability import metrics
from storefront.shops.service import ShopService
from storefront.webhooks.schemas import WebhookEvent
from storefront.webhooks.service import publish

# who may cancel from which state
CUSTOMER_CANCELLABLE = {OrderStatus.pending}
STAFF_CANCELLABLE = {OrderStatus.pending, OrderStatus.paid}


def event_data(order: Order) -> dict[str, Any]:
    """What a webhook receiver learns about an order: no personal data (no address, no
    customer), only what the shop needs to act on it."""
    return {
        "id": str(order.id),
        "shop_id": str(order.shop_id),
        "status": order.status.value,
        "currency": order.currency,
        "total_cents": order.total_cents,
        "lines": [
            {
                "product_id": str(line.product_id),
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
                "line_total_cents": line.line_total_cents,
            }
            for line in order.lines
        ],
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


class MixedCurrencies(UnprocessableEntity):
    slug = "mixed-currencies"
    title = "One order, one currency"


class OrderService:
    def __init__(
        self, session: AsyncSession, shop_id: uuid.UUID, *, jobs: JobQueue | None = None
    ) -> None:
        """``jobs``: where follow-up jobs (the confirmation email) go; None sends none."""
        self.session = session
        self.shop_id = shop_id
        self.jobs = jobs
        self.shops = ShopService(session)

    async def _repository(self, principal: Principal) -> tuple[OrderRepository, bool]:
        is_staff = await self.shops.is_staff(self.shop_id, principal)
        customer = None if is_staff else principal.user_id
        return OrderRepository(self.session, self.shop_id, customer_id=customer), is_staff

    async def place(self, principal: Principal, data: OrderIn) -> Order:
        await self.shops.get(self.shop_id)
        reserved = await CatalogService(self.session, self.shop_id).reserve(
            (line.product_id, line.quantity) for line in data.lines
        )
        currencies = {item.currency for item in reserved}
        if len(currencies) != 1:
            raise MixedCurrencies("All products of one order must share a currency.")
        by_id = {item.product_id: item for item in reserved}
        lines = [
            OrderLine(
                position=position,
                product_id=line.product_id,
                sku=by_id[line.product_id].sku,
                name=by_id[line.product_id].name,
                unit_price_cents=by_id[line.product_id].unit_price_cents,
                quantity=line.quantity,
                line_total_cents=by_id[line.product_id].unit_price_cents * line.quantity,
            )
            for position, line in enumerate(data.lines)
        ]
        order_id = new_id()
        order = Order(
            id=order_id,
            shop_id=self.shop_id,
            customer_id=principal.user_id,
            status=OrderStatus.pending,
            currency=currencies.pop(),
            total_cents=sum(line.line_total_cents for line in lines),
            # sealed with the customer's data key, bound to this order
            shipping_address_sealed=await seal_address(
                self.session,
                order_id,
                principal.user_id,
                data.shipping_address.model_dump(mode="json"),
            ),
            lines=lines,
        )
        placed = await OrderRepository(self.session, self.shop_id, customer_id=None).add(order)
        if self.jobs is not None:
            # sent only once this transaction commits; a rolled-back order mails nothing
            self.jobs.defer(
                self.session,
                send_order_confirmation,
                shop_id=str(self.shop_id),
                order_id=str(placed.id),
            )
        await publish(
            self.session, self.jobs, self.shop_id, WebhookEvent.order_placed, event_data(placed)
        )
        record(
            self.session,
            "order.placed",
            object_type="order",
            object_id=placed.id,
            shop_id=self.shop_id,
            details={"status": placed.status.value, "lines": len(placed.lines)},
        )
        metrics.record_order_placed(placed.currency, placed.total_cents)
        return placed

    async def list_page(
        self,
        principal: Principal,
        *,
        limit: int,
        after: uuid.UUID | None,
        status: OrderStatus | None,
    ) -> tuple[ExportBatch, uuid.UUID | None]:
        """A page of (order row, its line rows), and the id to continue after (None on the
        last page)."""
        repo, _ = await self._repository(principal)
        rows = await repo.list_rows(limit=limit + 1, after=after, status=status)
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1][0].id
        return rows, None

    async def export(
        self,
        principal: Principal,
        *,
        media_type: str,
        status: OrderStatus | None,
        after: uuid.UUID | None,
    ) -> OrderExport:
        """What a streamed export may contain: staff get every order, customers their own."""
        repo, is_staff = await self._repository(principal)
        # the export streams after this transaction: the entry records that it was granted
        record(
            self.session,
            "orders.exported",
            object_type="shop",
            object_id=self.shop_id,
            shop_id=self.shop_id,
            details={
                "format": media_type,
                "status": None if status is None else status.value,
                "scope": "all" if is_staff else "own",
            },
        )
        return OrderExport(
            shop_id=self.shop_id,
            customer_id=repo.customer_id,
            status=status,
            after=after,
            media_type=media_type,
        )

    async def get(self, principal: Principal, order_id: uuid.UUID) -> Order:
        repo, _ = await self._repository(principal)
        order = await repo.get(order_id)
        if order is None:
            raise NotFound("No such order.")
        return order

    async def cancel(self, principal: Principal, order_id: uuid.UUID) -> Order:
        repo, is_staff = await self._repository(principal)
        order = await repo.get(order_id)
        if order is None:
            raise NotFound("No such order.")
        allowed = STAFF_CANCELLABLE if is_staff else CUSTOMER_CANCELLABLE
        if not await repo.transition(order_id, allowed_from=allowed, to=OrderStatus.cancelled):
            # `order` was read before the row lock: a concurrent transition may have won since,
            # so report the status that actually made this one fail
            current = await repo.status_of(order_id) or order.status
            raise InvalidTransition(
                f"An order that is {current.value} cannot be cancelled by you.",
                extra={"current_status": current.value},
            )
        await CatalogService(self.session, self.shop_id).release(
            (line.product_id, line.quantity) for line in order.lines
        )
        self.session.expunge(order)
        refreshed = await repo.get(order_id)
        if refreshed is None:  # pragma: no cover - same transaction, cannot vanish
            raise NotFound("No such order.")
        await publish(
            self.session,
            self.jobs,
            self.shop_id,
            WebhookEvent.order_cancelled,
            event_data(refreshed),
        )
        record(
            self.session,
            "order.cancelled",
            object_type="order",
            object_id=order_id,
            shop_id=self.shop_id,
            details={
                "from": order.status.value,
                "to": refreshed.status.value,
                "by_staff": is_staff,
            },
        )
        metrics.record_order_cancelled()
        return refreshed
