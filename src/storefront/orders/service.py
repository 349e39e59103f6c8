"""Order rules: server-side totals, atomic stock reservation, legal transitions only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import record
from storefront.auth.principal import Principal
from storefront.cache import ResponseCache
from storefront.catalog.service import CatalogService
from storefront.events import EventType
from storefront.events import record as record_event
from storefront.jobs.queue import JobQueue
from storefront.kit.db import new_id, utcnow
from storefront.kit.errors import InvalidTransition, NotFound, UnprocessableEntity
from storefront.orders import metrics
from storefront.orders.export import OrderExport
from storefront.orders.limits import HoldLimits
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.orders.repository import ExportBatch, OrderRepository, customer_rows
from storefront.orders.schemas import OrderIn
from storefront.orders.sealing import seal_address
from storefront.orders.tasks import send_order_confirmation
from storefront.settings import OrdersSettings
from storefront.shops.service import ShopService
from storefront.vault import PersonalDataVault
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


@dataclass(frozen=True, slots=True)
class OrderViewer:
    """A caller allowed to read a shop's orders (orders/auth.py ``OrderReader``): the shop's
    staff see all of them, anyone else only their own (someone else's order is 404, never 403:
    its existence is not the caller's business)."""

    shop_id: uuid.UUID
    principal: Principal
    is_staff: bool

    @property
    def customer_id(self) -> uuid.UUID | None:
        """The customer the caller's view is narrowed to; None: the whole shop."""
        return None if self.is_staff else self.principal.user_id


async def customer_orders_page(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    after: uuid.UUID | None,
    vault: PersonalDataVault | None = None,
) -> tuple[list[tuple[OrderViewer, Any, list[Any]]], uuid.UUID | None]:
    """A page of the caller's own orders in every shop, in id order (the order they were
    placed in), each with the customer's view of its shop (what it reads next, payments,
    stays their own even where they are staff), and the id to continue after (None on the
    last page)."""
    rows = await customer_rows(
        session, principal.user_id, limit=limit + 1, after=after, vault=vault
    )
    viewers: dict[uuid.UUID, OrderViewer] = {}
    page = [
        (viewers.setdefault(row.shop_id, OrderViewer(row.shop_id, principal, False)), row, lines)
        for row, lines in rows[:limit]
    ]
    return page, (rows[limit - 1][0].id if len(rows) > limit else None)


class MixedCurrencies(UnprocessableEntity):
    slug = "mixed-currencies"
    title = "One order, one currency"


class OrderService:
    def __init__(
        self,
        session: AsyncSession,
        shop_id: uuid.UUID,
        *,
        cache: ResponseCache | None,
        vault: PersonalDataVault,
        jobs: JobQueue | None = None,
        orders: OrdersSettings | None = None,
    ) -> None:
        """``cache``: invalidated once stock changes commit (None: nothing to invalidate).
        ``vault``: seals the shipping address. ``jobs``: where follow-up jobs (the
        confirmation email) go; None sends none. ``orders``: the payment window and default
        hold limits (None: the defaults)."""
        self.session = session
        self.shop_id = shop_id
        self.cache = cache
        self.vault = vault
        self.jobs = jobs
        self.orders = orders or OrdersSettings()
        self.shops = ShopService(session)

    def _event(self, event_type: EventType, order: Order) -> None:
        """The domain event of this change, in its transaction (decision 0140)."""
        record_event(
            self.session,
            event_type,
            subject=f"orders/{order.id}",
            data=event_data(order),
            shop_id=self.shop_id,
        )

    async def viewer(self, principal: Principal) -> OrderViewer:
        """What ``principal`` may read of this shop's orders; raises NotFound for an unknown
        shop."""
        return OrderViewer(
            self.shop_id, principal, await self.shops.is_staff(self.shop_id, principal)
        )

    def _repository(self, viewer: OrderViewer) -> OrderRepository:
        if viewer.shop_id != self.shop_id:  # a viewer of another shop sees nothing here
            raise NotFound("No such shop.")
        return OrderRepository(self.session, self.shop_id, customer_id=viewer.customer_id)

    async def place(self, principal: Principal, data: OrderIn) -> Order:
        shop = await self.shops.get(self.shop_id)
        # what one customer may hold unpaid (decision 0118): the order alone first, then,
        # once its stock is taken (the product rows locked), with their other pending orders
        limits = HoldLimits.of(shop, self.orders)
        limits.check_order([(line.product_id, line.quantity) for line in data.lines])
        reserved = await CatalogService(self.session, self.shop_id, self.cache).reserve(
            (line.product_id, line.quantity) for line in data.lines
        )
        await limits.check_holdings(self.session, self.shop_id, principal.user_id, reserved)
        currencies = {item.currency for item in reserved}
        if len(currencies) != 1:
            raise MixedCurrencies("All products of one order must share a currency.")
        by_id = {item.product_id: item for item in reserved}
        order_id = new_id()
        now = utcnow()
        # every column given here: the rows are written by Core INSERTs (OrderRepository.add),
        # not by the ORM's flush, so no column default applies
        lines = [
            OrderLine(
                id=new_id(),
                order_id=order_id,
                shop_id=self.shop_id,
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
        order = Order(
            id=order_id,
            shop_id=self.shop_id,
            customer_id=principal.user_id,
            status=OrderStatus.pending,
            version=1,
            confirmation_sent_at=None,
            created_at=now,
            updated_at=now,
            # unpaid by then, it expires and its stock goes back (orders/expiry.py)
            expires_at=now + timedelta(minutes=self.orders.payment_window_minutes),
            currency=currencies.pop(),
            total_cents=sum(line.line_total_cents for line in lines),
            # sealed with the customer's data key, bound to this order
            shipping_address_sealed=await seal_address(
                self.session,
                order_id,
                principal.user_id,
                data.shipping_address.model_dump(mode="json"),
                vault=self.vault,
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
        self._event(EventType.order_placed, placed)
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
        viewer: OrderViewer,
        *,
        limit: int,
        after: uuid.UUID | None,
        status: OrderStatus | None,
    ) -> tuple[ExportBatch, uuid.UUID | None]:
        """A page of (order row, its line rows), and the id to continue after (None on the
        last page)."""
        repo = self._repository(viewer)
        rows = await repo.list_rows(limit=limit + 1, after=after, status=status, vault=self.vault)
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1][0].id
        return rows, None

    async def export(
        self,
        viewer: OrderViewer,
        *,
        media_type: str,
        status: OrderStatus | None,
        after: uuid.UUID | None,
    ) -> OrderExport:
        """What a streamed export may contain: staff get every order, customers their own."""
        repo = self._repository(viewer)
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
                "scope": "all" if viewer.is_staff else "own",
            },
        )
        return OrderExport(
            shop_id=self.shop_id,
            customer_id=repo.customer_id,
            status=status,
            after=after,
            media_type=media_type,
            vault=self.vault,
        )

    async def get(self, viewer: OrderViewer, order_id: uuid.UUID) -> Order:
        repo = self._repository(viewer)
        order = await repo.get(order_id)
        if order is None:
            raise NotFound("No such order.")
        return order

    async def visible_ids(
        self, viewer: OrderViewer, order_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``order_ids`` ``viewer`` may see (staff: the shop's; a customer: their
        own); one statement."""
        return await self._repository(viewer).ids_among(order_ids)

    async def cancel(self, viewer: OrderViewer, order_id: uuid.UUID) -> Order:
        repo = self._repository(viewer)
        is_staff = viewer.is_staff
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
        await CatalogService(self.session, self.shop_id, self.cache).release(
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
        self._event(EventType.order_cancelled, refreshed)
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

    async def expire(self, order_id: uuid.UUID) -> bool:
        """Expire one pending order whose payment window has passed: status ``expired``,
        its stock back, caches of its products invalidated, the same audit entry and
        webhook kind as a cancellation. False (and nothing changed) when the order is no
        longer pending: a cancellation (or payment) won the compare-and-set, so the stock is
        released once, by whoever changed the status."""
        repo = OrderRepository(self.session, self.shop_id, customer_id=None)
        if not await repo.transition(
            order_id, allowed_from={OrderStatus.pending}, to=OrderStatus.expired
        ):
            return False
        order = await repo.get(order_id)
        if order is None:  # pragma: no cover - same transaction, cannot vanish
            return False
        await CatalogService(self.session, self.shop_id, self.cache).release(
            (line.product_id, line.quantity) for line in order.lines
        )
        await publish(
            self.session, self.jobs, self.shop_id, WebhookEvent.order_expired, event_data(order)
        )
        self._event(EventType.order_expired, order)
        record(
            self.session,
            "order.expired",
            object_type="order",
            object_id=order_id,
            shop_id=self.shop_id,
            details={
                "from": OrderStatus.pending.value,
                "to": OrderStatus.expired.value,
                "reason": "payment-window-passed",
            },
        )
        metrics.record_order_expired()
        return True

    async def mark_paid(self, order_id: uuid.UUID) -> bool:
        """The provider confirmed a payment of this pending order: it becomes ``paid``
        (called by payments, decision 0137). False, and nothing changed, when the order is
        no longer pending (it expired or was cancelled meanwhile: the payment is refunded)."""
        repo = OrderRepository(self.session, self.shop_id, customer_id=None)
        if not await repo.transition(
            order_id, allowed_from={OrderStatus.pending}, to=OrderStatus.paid
        ):
            return False
        record(
            self.session,
            "order.paid",
            object_type="order",
            object_id=order_id,
            shop_id=self.shop_id,
            details={"from": OrderStatus.pending.value, "to": OrderStatus.paid.value},
        )
        return True
