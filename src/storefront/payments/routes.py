"""Paying orders, reading their payments, cancelling orders (with the refund of a paid one)
and the provider's webhooks. The cancel route lives here, not in orders: cancelling a paid
order moves money, and payments sits above orders (orders never imports payments;
decision 0137)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import BaseModel

from storefront.idempotency import StoredResponse
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.inputs import Text
from storefront.orders.schemas import OrderOut
from storefront.orders.serialise import orders_out
from storefront.payments import webhooks
from storefront.payments.auth import OrderCanceller, OrderPayer, PaymentsReader
from storefront.payments.models import Payment
from storefront.payments.schemas import PaymentIn, PaymentOut
from storefront.payments.service import PaymentAttempts, PaymentService
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.idempotency import require_key, stored_response
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES, no_store

router = APIRouter(tags=["payments"])


class PaymentList(BaseModel):
    items: list[PaymentOut]


class WebhookAck(BaseModel):
    received: bool
    replayed: bool


@router.post(
    "/shops/{shop_id}/orders/{order_id}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentOut,
    responses={
        **PROBLEM_RESPONSES,
        402: {**PROBLEM_RESPONSES[400], "description": "Declined: nothing charged"},
        504: {**PROBLEM_RESPONSES[400], "description": "The provider did not answer"},
    },
    summary="Pay an order (requires an Idempotency-Key header)",
)
async def pay_order(
    order_id: uuid.UUID,
    body: PaymentIn,
    viewer: OrderPayer,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    key: Annotated[str, Depends(require_key)],
) -> Response:
    shop_id = viewer.shop_id
    payments = PaymentService.of(session, shop_id, resources)

    def respond(payment: Payment) -> StoredResponse:
        return payment_answer(shop_id, payment)

    async def pay(attempt: uuid.UUID) -> StoredResponse:
        return respond(await payments.pay(viewer, order_id, body.payment_method, attempt=attempt))

    stored = await resources.idempotency.run_attempt(
        session,
        owner=str(principal.user_id),
        scope=f"POST {API_PREFIX}/shops/{shop_id}/orders/{order_id}/payments",
        key=key,
        payload=body.model_dump(mode="json"),
        work=pay,
        outcomes=PaymentAttempts(payments, order_id, respond),
    )
    return stored_response(stored)


def payment_answer(shop_id: uuid.UUID, payment: Payment) -> StoredResponse:
    """v1's answer to a payment (REST and GraphQL's ``payOrder`` share its key scope)."""
    return StoredResponse(
        status.HTTP_201_CREATED,
        PaymentOut.model_validate(payment).model_dump_json().encode(),
        {
            "Location": f"{API_PREFIX}/shops/{shop_id}/orders/{payment.order_id}/payments",
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/shops/{shop_id}/orders/{order_id}/payments",
    response_model=PaymentList,
    responses=PROBLEM_RESPONSES,
)
async def list_payments(
    order_id: uuid.UUID,
    viewer: PaymentsReader,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> PaymentList:
    no_store(response)
    payments = await PaymentService.of(session, viewer.shop_id, resources).list_for_order(
        viewer, order_id
    )
    return PaymentList(items=[PaymentOut.model_validate(p) for p in payments])


@router.post(
    "/shops/{shop_id}/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses=PROBLEM_RESPONSES,
)
async def cancel_order(
    order_id: uuid.UUID,
    viewer: OrderCanceller,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> OrderOut:
    no_store(response)
    order = await PaymentService.of(session, viewer.shop_id, resources).cancel_order(
        viewer, order_id
    )
    (out,) = await orders_out(session, [order], vault=resources.vault)
    return out


@router.post(
    "/webhooks/stripe",
    response_model=WebhookAck,
    responses=PROBLEM_RESPONSES,
    summary="The payment provider's events (Stripe-Signature verified)",
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    stripe_signature: Annotated[Text | None, Header()] = None,
) -> WebhookAck:
    event = webhooks.verify(await request.body(), stripe_signature, resources)
    processed = await webhooks.handle(session, resources, event)
    return WebhookAck(received=True, replayed=not processed)
