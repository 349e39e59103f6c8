"""Orders in the GraphQL schema: ``orders`` (a Relay connection) and ``order`` of a shop,
what the caller may see of them exactly as REST (staff every order, a customer their own,
someone else's order not found), and ``placeOrder`` with an idempotency key that means what
the ``Idempotency-Key`` header means (the same stored operation: a retry through either
interface replays it). An order's shop, its lines' products and its payments come through
per-request DataLoaders: one statement per relation and page, whatever the page size."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import strawberry

from storefront.auth.principal import Principal
from storefront.catalog.graphql import PRODUCT, Product
from storefront.events import CloudEvent
from storefront.idempotency import MAX_KEY_LENGTH, StoredResponse
from storefront.kit.errors import IdempotencyKeyMissing, NotFound, UnprocessableEntity
from storefront.orders.limits import LIMIT_NAMES, OrderLimitsOut, OrderLimitsPatch, limits_out
from storefront.orders.models import OrderStatus as OrderStatusValue
from storefront.orders.schemas import OrderIn
from storefront.orders.serialise import order_json
from storefront.orders.service import OrderService, OrderViewer, customer_orders_page
from storefront.resources import Resources
from storefront.shops.graphql import SHOP, Shop
from storefront.shops.service import ShopService
from storefront.web.graphql import (
    Connection,
    GraphQLContext,
    LoaderKey,
    MoneyValue,
    connection,
    page_request,
)
from storefront.web.paths import API_PREFIX

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# (who reads, order id) -> the order's payments, as the payments domain's GraphQL type (it
# sits above orders and provides the batch: storefront.graphql pairs them)
PAYMENTS = LoaderKey[tuple[OrderViewer, uuid.UUID], list[Any]]("payments-of-order")


@strawberry.enum(description="Where an order stands; only legal transitions happen.")
class OrderStatus(Enum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@strawberry.type(description="What was bought, at the price it was bought for.")
class OrderLine:
    product_id: strawberry.ID = strawberry.field(description="The product bought.")
    sku: str = strawberry.field(description="The product's sku when bought.")
    name: str = strawberry.field(description="The product's name when bought.")
    unit_price: MoneyValue = strawberry.field(description="The price of one unit when bought.")
    quantity: int = strawberry.field(description="Units bought.")
    line_total: MoneyValue = strawberry.field(description="unitPrice times quantity.")
    shop_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The product as it is now; null once archived.")
    async def product(self, info: strawberry.Info[GraphQLContext, None]) -> Product | None:
        out = await info.context.loader(PRODUCT).load((self.shop_id, uuid.UUID(self.product_id)))
        return None if out is None else Product.of(out)


@strawberry.type(description="An order of one customer in one shop.")
class Order:
    id: strawberry.ID = strawberry.field(description="The order's id.")
    shop_id: strawberry.ID = strawberry.field(description="The shop it was placed in.")
    customer_id: strawberry.ID | None = strawberry.field(
        description="Null once the customer's account was erased."
    )
    status: OrderStatus = strawberry.field(description="Where it stands.")
    total: MoneyValue = strawberry.field(description="What it costs, all lines together.")
    lines: list[OrderLine] = strawberry.field(description="What was bought.")
    created_at: datetime = strawberry.field(description="When it was placed.")
    updated_at: datetime = strawberry.field(description="When it last changed.")
    expires_at: datetime | None = strawberry.field(
        description="When it expires unless paid (pending orders)."
    )
    viewer: strawberry.Private[OrderViewer]

    @strawberry.field(description="The shop the order was placed in.")
    async def shop(self, info: strawberry.Info[GraphQLContext, None]) -> Shop:
        row = await info.context.loader(SHOP).load(uuid.UUID(self.shop_id))
        if row is None:  # pragma: no cover - a shop with orders is never deleted (RESTRICT)
            raise NotFound("No such shop.")
        return Shop.of(row)

    @strawberry.field(description="Its payment attempts, oldest first.")
    async def payments(
        self, info: strawberry.Info[GraphQLContext, None]
    ) -> list[Annotated[Payment, strawberry.lazy("storefront.payments.graphql")]]:  # type: ignore[name-defined]  # noqa: F821
        # the payments domain's batch gives its own Payment objects
        return await info.context.loader(PAYMENTS).load((self.viewer, uuid.UUID(self.id)))

    @classmethod
    def of(cls, viewer: OrderViewer, row: Any, lines: Sequence[Any]) -> Order:
        """An order row (ORM object or plain row) and its line rows."""
        return cls(
            id=strawberry.ID(str(row.id)),
            shop_id=strawberry.ID(str(row.shop_id)),
            customer_id=None if row.customer_id is None else strawberry.ID(str(row.customer_id)),
            status=OrderStatus(OrderStatusValue(row.status).value),
            total=MoneyValue(row.total_cents, row.currency),
            lines=[
                OrderLine(
                    product_id=strawberry.ID(str(line.product_id)),
                    sku=line.sku,
                    name=line.name,
                    unit_price=MoneyValue(line.unit_price_cents, row.currency),
                    quantity=line.quantity,
                    line_total=MoneyValue(line.line_total_cents, row.currency),
                    shop_id=row.shop_id,
                )
                for line in lines
            ],
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            viewer=viewer,
        )


def order_service(session: AsyncSession, shop_id: uuid.UUID, resources: Resources) -> OrderService:
    return OrderService(
        session,
        shop_id,
        cache=resources.cache,
        vault=resources.vault,
        jobs=resources.jobs,
        orders=resources.settings.orders,
    )


async def order_viewer(
    context: GraphQLContext, session: AsyncSession, shop_id: uuid.UUID
) -> OrderViewer:
    """What the caller may see of the shop's orders (REST's OrderReader): unknown shop, not
    found; staff, every order; anyone else signed in, their own."""
    principal = context.require_principal()
    return await order_service(session, shop_id, context.resources).viewer(principal)


def checked_key(key: str) -> str:
    """The key checked as the Idempotency-Key header is."""
    key = key.strip()
    if not key:
        raise IdempotencyKeyMissing("Pass idempotencyKey (a fresh UUID per operation).")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise UnprocessableEntity(
            f"idempotencyKey must be printable and at most {MAX_KEY_LENGTH} characters."
        )
    return key


@strawberry.input(description="A shipping address (stored encrypted, as REST's).")
class AddressInput:
    name: str = strawberry.field(description="The recipient.")
    line1: str = strawberry.field(description="Street and number.")
    line2: str | None = strawberry.field(default=None, description="More of the address, if any.")
    city: str = strawberry.field(description="The city.")
    postal_code: str = strawberry.field(description="The postal code.")
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, upper case.")
    phone: str | None = strawberry.field(
        default=None, description="A phone number for the carrier, if any."
    )


@strawberry.input(description="One product of an order and how many units of it.")
class OrderLineInput:
    product_id: uuid.UUID = strawberry.field(description="An active product of the shop.")
    quantity: int = strawberry.field(description="Units, at least 1.")


@strawberry.input(description="What to order and where to ship it.")
class OrderInput:
    lines: list[OrderLineInput] = strawberry.field(
        description="One line per product (each product at most once)."
    )
    shipping_address: AddressInput = strawberry.field(description="Where to ship the order.")


def _order_in(data: OrderInput) -> OrderIn:
    address = data.shipping_address
    return OrderIn.model_validate(
        {
            "lines": [
                {"product_id": line.product_id, "quantity": line.quantity} for line in data.lines
            ],
            "shipping_address": {
                "name": address.name,
                "line1": address.line1,
                "line2": address.line2,
                "city": address.city,
                "postal_code": address.postal_code,
                "country": address.country,
                "phone": address.phone,
            },
        }
    )


@strawberry.type(
    description="The caller's orders (part of Viewer, composed in storefront.graphql)."
)
class ViewerOrders:
    @strawberry.field(
        description="A page of the caller's own orders in every shop, in id order (the order "
        "they were placed in); as a customer, even in a shop they are staff of."
    )
    async def orders(
        self,
        info: strawberry.Info[GraphQLContext, None],
        first: Annotated[int | None, strawberry.argument(description="1..100, default 20")] = None,
        after: str | None = None,
    ) -> Connection[Order]:
        context = info.context
        principal = context.require_principal()
        page = page_request(first, after)
        async with context.reading() as session:
            rows, last = await customer_orders_page(
                session, principal, limit=page.limit, after=page.after
            )
        return connection(
            [Order.of(viewer, row, lines) for viewer, row, lines in rows],
            [row.id for _, row, _ in rows],
            has_next_page=last is not None,
        )


@strawberry.type(
    description="What one customer may hold unpaid in a shop, and the payment window "
    "(decision 0118)."
)
class OrderLimits:
    shop_id: strawberry.ID = strawberry.field(description="The shop.")
    max_line_quantity: int = strawberry.field(description="Units of one product on one order.")
    max_order_units: int = strawberry.field(description="Units on one order.")
    max_pending_units: int = strawberry.field(
        description="Units across one customer's pending orders in the shop (the new order "
        "included)."
    )
    max_pending_stock_percent: int = strawberry.field(
        description="Share (%) of a product's stock one customer's pending orders may hold; "
        "never less than stockShareFloorUnits."
    )
    stock_share_floor_units: int = strawberry.field(
        description="Units of one product a customer may always hold (platform setting)."
    )
    payment_window_minutes: int = strawberry.field(
        description="How long a pending order waits for payment before it expires (platform "
        "setting)."
    )
    shop_set: list[str] = strawberry.field(
        description="The limits this shop set itself (snake_case names, as REST); the others "
        "are the platform defaults."
    )

    @classmethod
    def of(cls, out: OrderLimitsOut) -> OrderLimits:
        return cls(
            shop_id=strawberry.ID(str(out.shop_id)),
            max_line_quantity=out.max_line_quantity,
            max_order_units=out.max_order_units,
            max_pending_units=out.max_pending_units,
            max_pending_stock_percent=out.max_pending_stock_percent,
            stock_share_floor_units=out.stock_share_floor_units,
            payment_window_minutes=out.payment_window_minutes,
            shop_set=list(out.shop_set),
        )


@strawberry.input(
    description="The limits to change: a field left out stays as it is; null goes back to "
    "the platform default."
)
class OrderLimitsInput:
    max_line_quantity: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Units of one product on one order (null: the platform default).",
    )
    max_order_units: int | None = strawberry.field(
        default=strawberry.UNSET, description="Units on one order (null: the platform default)."
    )
    max_pending_units: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Units across one customer's pending orders (null: the platform default).",
    )
    max_pending_stock_percent: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Share (%) of a product's stock one customer may hold (null: the "
        "platform default).",
    )


@strawberry.type
class OrderQuery:
    @strawberry.field(
        description="A page of the shop's orders in id order: its staff see every order, "
        "anyone else signed in their own."
    )
    async def orders(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        first: Annotated[int | None, strawberry.argument(description="1..100, default 20")] = None,
        after: str | None = None,
        status: OrderStatus | None = None,
    ) -> Connection[Order]:
        context = info.context
        page = page_request(first, after)
        async with context.reading() as session:
            viewer = await order_viewer(context, session, shop_id)
            rows, last = await order_service(session, shop_id, context.resources).list_page(
                viewer,
                limit=page.limit,
                after=page.after,
                status=None if status is None else OrderStatusValue(status.value),
            )
        return connection(
            [Order.of(viewer, row, lines) for row, lines in rows],
            [row.id for row, _ in rows],
            has_next_page=last is not None,
        )

    @strawberry.field(description="One order (someone else's: not found).")
    async def order(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, id: uuid.UUID
    ) -> Order | None:
        context = info.context
        async with context.reading() as session:
            viewer = await order_viewer(context, session, shop_id)
            row = await order_service(session, shop_id, context.resources).get(viewer, id)
        return Order.of(viewer, row, row.lines)

    @strawberry.field(
        description="The shop's hold limits (anyone signed in, as GET /shops/{id}/order-limits)."
    )
    async def order_limits(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID
    ) -> OrderLimits:
        context = info.context
        context.require_principal()
        async with context.reading() as session:
            shop = await ShopService(session).get(shop_id)
            return OrderLimits.of(limits_out(shop, context.resources.settings.orders))


async def _place(
    context: GraphQLContext,
    session: AsyncSession,
    principal: Principal,
    shop_id: uuid.UUID,
    data: OrderIn,
    key: str,
) -> uuid.UUID:
    """Place the order at most once per (caller, shop, key), as POST /shops/{id}/orders
    does (the same scope: the key names one operation whichever interface retries it);
    the id of the order placed now or by the earlier run."""
    resources = context.resources

    async def place() -> StoredResponse:
        order = await order_service(session, shop_id, resources).place(principal, data)
        return StoredResponse(
            201,
            await order_json(session, order, vault=resources.vault),
            {
                "Location": f"{API_PREFIX}/shops/{shop_id}/orders/{order.id}",
                "Cache-Control": "no-store",
            },
        )

    stored = await resources.idempotency.run(
        session,
        owner=str(principal.user_id),
        scope=f"POST {API_PREFIX}/shops/{shop_id}/orders",
        key=key,
        payload=data.model_dump(mode="json"),
        work=place,
    )
    return uuid.UUID(orjson.loads(stored.body)["id"])


@strawberry.type
class OrderMutation:
    @strawberry.mutation(
        description="Change the shop's hold limits (owners and staff, as PATCH "
        "/shops/{id}/order-limits); orders placed afterwards are checked against them."
    )
    async def update_order_limits(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        input: OrderLimitsInput,
    ) -> OrderLimits:
        context = info.context
        principal = context.require_principal()
        given = {
            name: getattr(input, name)
            for name in LIMIT_NAMES
            if getattr(input, name) is not strawberry.UNSET
        }
        body = OrderLimitsPatch.model_validate(given)
        values = {
            name: getattr(body, name) for name in LIMIT_NAMES if name in body.model_fields_set
        }
        async with context.writing() as session:
            shops = ShopService(session)
            await shops.require_staff(shop_id, principal)
            shop = await shops.change_hold_limits(shop_id, values)
            return OrderLimits.of(limits_out(shop, context.resources.settings.orders))

    @strawberry.mutation(
        description="Place an order. `idempotencyKey` works as the Idempotency-Key header: "
        "the same key with the same input gives the same order (placed once), with other "
        "input an error with code idempotency-key-reused."
    )
    async def place_order(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        input: OrderInput,
        idempotency_key: str,
    ) -> Order:
        context = info.context
        principal = context.require_principal()
        key = checked_key(idempotency_key)
        data = _order_in(input)
        async with context.writing() as session:
            order_id = await _place(context, session, principal, shop_id, data, key)
        async with context.reading() as session:
            viewer = await order_viewer(context, session, shop_id)
            row = await order_service(session, shop_id, context.resources).get(viewer, order_id)
        return Order.of(viewer, row, row.lines)


def _order_event(event: CloudEvent, shop_id: uuid.UUID) -> bool:
    return event.type.startswith("order.") and event.data.get("shop_id") == str(shop_id)


@strawberry.type
class OrderSubscription:
    @strawberry.subscription(
        description="The order as it is now, then each time it changes (paid, cancelled, "
        "refunded, expired), from any process: its customer and the shop's staff (anyone "
        "else: not-found, as reading it)."
    )
    async def order_updated(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, order_id: uuid.UUID
    ) -> AsyncGenerator[Order, None]:
        context = info.context
        live = context.require_live()
        async with context.reading() as session:
            viewer = await order_viewer(context, session, shop_id)
        subject = f"orders/{order_id}"
        # registered before the snapshot is read: no change falls between the two
        stream = live.subscribe(lambda e: _order_event(e, shop_id) and e.subject == subject)
        try:
            async with context.reading() as session:
                row = await order_service(session, shop_id, context.resources).get(viewer, order_id)
            yield Order.of(viewer, row, row.lines)
            async for _event in stream:
                context.fresh_loaders()
                async with context.reading() as session:
                    row = await order_service(session, shop_id, context.resources).get(
                        viewer, order_id
                    )
                yield Order.of(viewer, row, row.lines)
        finally:
            await stream.aclose()

    @strawberry.subscription(
        description="Every order of the shop as it changes, from any process: the shop's "
        "owners and staff only (anyone else: forbidden, as REST)."
    )
    async def shop_orders(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID
    ) -> AsyncGenerator[Order, None]:
        context = info.context
        live = context.require_live()
        principal = context.require_principal()
        async with context.reading() as session:
            await ShopService(session).require_staff(shop_id, principal)
            viewer = await order_service(session, shop_id, context.resources).viewer(principal)
        stream = live.subscribe(lambda e: _order_event(e, shop_id))
        try:
            async for event in stream:
                context.fresh_loaders()
                async with context.reading() as session:
                    row = await order_service(session, shop_id, context.resources).get(
                        viewer, uuid.UUID(event.data["id"])
                    )
                yield Order.of(viewer, row, row.lines)
        finally:
            await stream.aclose()
