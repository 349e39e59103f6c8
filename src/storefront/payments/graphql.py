"""Payments in the GraphQL schema: an order's payments (the batch behind orders' PAYMENTS
key), ``payOrder`` (with an idempotency key, as the REST route's header) and
``cancelOrder`` (here, not in orders: cancelling a paid order refunds it, decision 0137)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.idempotency import StoredResponse
from storefront.orders.graphql import Order, checked_key, order_viewer
from storefront.orders.service import OrderViewer
from storefront.payments.models import Payment as PaymentRow
from storefront.payments.routes import payment_answer
from storefront.payments.schemas import PaymentIn, PaymentOut
from storefront.payments.service import PaymentAttempts, PaymentService
from storefront.web.graphql import GraphQLContext, MoneyValue
from storefront.web.paths import API_PREFIX


@strawberry.enum(description="Where a payment attempt stands.")
class PaymentStatus(Enum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


@strawberry.type(description="One attempt to pay an order.")
class Payment:
    id: strawberry.ID = strawberry.field(description="The payment's id.")
    order_id: strawberry.ID = strawberry.field(description="The order it pays.")
    status: PaymentStatus = strawberry.field(description="Where it stands.")
    amount: MoneyValue = strawberry.field(description="The amount charged (or to be charged).")
    provider_reference: str | None = strawberry.field(
        description="The provider's PaymentIntent id (null until the provider answered)."
    )
    failure_code: str | None = strawberry.field(
        description="Why it failed (the provider's code), when it did."
    )
    created_at: datetime = strawberry.field(description="When it was started.")
    updated_at: datetime = strawberry.field(description="When it last changed.")

    @classmethod
    def of(cls, row: PaymentRow | PaymentOut) -> Payment:
        return cls(
            id=strawberry.ID(str(row.id)),
            order_id=strawberry.ID(str(row.order_id)),
            status=PaymentStatus(row.status.value),
            amount=MoneyValue(row.amount_cents, row.currency),
            provider_reference=row.provider_reference,
            failure_code=row.failure_code,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def payments_of_orders(
    context: GraphQLContext,
) -> Callable[[list[tuple[OrderViewer, uuid.UUID]]], Awaitable[Sequence[Any]]]:
    """The batch behind orders' PAYMENTS key: two statements per viewer (shop) in the batch
    (which orders the viewer may see, their payments)."""

    async def load(keys: list[tuple[OrderViewer, uuid.UUID]]) -> list[list[Payment]]:
        by_viewer: dict[OrderViewer, list[uuid.UUID]] = defaultdict(list)
        for viewer, order_id in keys:
            by_viewer[viewer].append(order_id)
        found: dict[tuple[OrderViewer, uuid.UUID], list[Payment]] = {}
        async with context.reading() as session:
            for viewer, order_ids in by_viewer.items():
                service = PaymentService.of(session, viewer.shop_id, context.resources)
                rows = await service.list_for_orders(viewer, order_ids)
                for order_id, payments in rows.items():
                    found[viewer, order_id] = [Payment.of(p) for p in payments]
        return [found.get(key, []) for key in keys]

    return load


async def _pay(
    context: GraphQLContext,
    session: AsyncSession,
    shop_id: uuid.UUID,
    order_id: uuid.UUID,
    body: PaymentIn,
    key: str,
) -> Payment:
    viewer = await order_viewer(context, session, shop_id)

    payments = PaymentService.of(session, shop_id, context.resources)

    def respond(payment: PaymentRow) -> StoredResponse:
        return payment_answer(shop_id, payment)

    async def pay(attempt: uuid.UUID) -> StoredResponse:
        return respond(await payments.pay(viewer, order_id, body.payment_method, attempt=attempt))

    # the REST route's scope and answer: one key names one payment whichever interface
    # retries it
    stored = await context.resources.idempotency.run_attempt(
        session,
        owner=str(viewer.principal.user_id),
        scope=f"POST {API_PREFIX}/shops/{shop_id}/orders/{order_id}/payments",
        key=key,
        payload=body.model_dump(mode="json"),
        work=pay,
        outcomes=PaymentAttempts(payments, order_id, respond),
    )
    return Payment.of(PaymentOut.model_validate_json(stored.body))


@strawberry.type
class PaymentMutation:
    @strawberry.mutation(
        description="Pay an order (its customer). `idempotencyKey` works as the "
        "Idempotency-Key header: a retry with the same key never charges twice."
    )
    async def pay_order(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        order_id: uuid.UUID,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment:
        key = checked_key(idempotency_key)
        body = PaymentIn.model_validate({"payment_method": payment_method})
        info.context.require_principal()
        async with info.context.writing() as session:
            return await _pay(info.context, session, shop_id, order_id, body, key)

    @strawberry.mutation(
        description="Cancel an order: its customer while pending, the shop's staff while "
        "pending or paid (a paid order is refunded first)."
    )
    async def cancel_order(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, order_id: uuid.UUID
    ) -> Order:
        context = info.context
        async with context.writing() as session:
            viewer = await order_viewer(context, session, shop_id)
            order = await PaymentService.of(session, shop_id, context.resources).cancel_order(
                viewer, order_id
            )
            return Order.of(viewer, order, order.lines)
