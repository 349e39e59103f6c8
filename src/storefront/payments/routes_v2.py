"""Orders and their payments in API v2 (HAL, decision 0142).

They live here, beside v1's cancel route, because an order's v2 representation embeds its
payments and offers ``sf:pay``/``sf:refund``, and payments sit above orders (decision 0137).
Every rule is the services' (``OrderService``, ``PaymentService``) and every authorization
v1's dependencies (``OrderReader``, ``OrderPayer``, ``OrderCanceller``): v2 only shapes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import Field

from storefront.idempotency import StoredResponse
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.errors import NotFound
from storefront.kit.money import money
from storefront.orders.auth import OrderReader
from storefront.orders.export import CSV as EXPORT_CSV
from storefront.orders.export import NDJSON as EXPORT_NDJSON
from storefront.orders.hal import order_path, order_resource
from storefront.orders.models import OrderStatus
from storefront.orders.schemas import OrderIn
from storefront.orders.sealing import open_addresses
from storefront.orders.service import OrderService, OrderViewer
from storefront.payments.auth import OrderCanceller, OrderPayer, PaymentsReader
from storefront.payments.models import Payment
from storefront.payments.schemas import PaymentIn
from storefront.payments.service import PaymentAttempts, PaymentService
from storefront.web.deps import ResourcesDep, SessionDep, read_after
from storefront.web.hal import (
    CURIES,
    HAL_JSON,
    OFFERS,
    ORDER,
    SHOP,
    Accepted,
    HalOut,
    HALResponse,
    MoneyOut,
    PageParamsV2Dep,
    Resource,
    accepted_among,
    encode,
    hal_response,
    ident,
    link,
    op_link,
    page,
    problems,
    resource,
    timestamp,
    transcode,
    v2,
)
from storefront.web.idempotency import require_key
from storefront.web.paths import API_V2_PREFIX
from storefront.web.responses import NO_STORE, PERSONAL
from storefront.web.route_policy import route_policy
from storefront.web.streaming import ClosingStreamingResponse

router = APIRouter(tags=["orders (v2)"])
# a collection: its documents, and v1's streamed exports
LIST_OFFERS = (*OFFERS, EXPORT_NDJSON, EXPORT_CSV)


class PaymentV2(HalOut):
    id: str
    order_id: str
    status: str
    amount: MoneyOut
    provider_reference: str | None
    failure_code: str | None
    created_at: str
    updated_at: str


class OrderLineV2(HalOut):
    product_id: str
    sku: str
    name: str
    unit_price: MoneyOut
    quantity: int
    line_total: MoneyOut


class OrderV2(HalOut):
    id: str
    shop_id: str
    customer_id: str | None
    status: str
    total: MoneyOut
    shipping_address: dict[str, Any] | None
    customer_erased: bool
    created_at: str
    updated_at: str
    expires_at: str | None
    embedded: dict[str, list[OrderLineV2] | list[PaymentV2]] = Field(
        alias="_embedded", description="lines; payments (not in listings)"
    )


class OrderPageV2(HalOut):
    count: int
    embedded: dict[str, list[OrderV2]] = Field(alias="_embedded")


class PaymentListV2(HalOut):
    count: int
    embedded: dict[str, list[PaymentV2]] = Field(alias="_embedded")


SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ORDER_ID = "0190a1b2-c3d4-7e5f-8a9b-0000000000c1"
PAYMENT_ID = "0190a1b2-c3d4-7e5f-8a9b-0000000000d1"
ORDER_URL = f"/api/v2/shops/{SHOP_ID}/orders/{ORDER_ID}"
EUR_37_50 = {"amount": "37.50", "currency": "EUR"}
ORDER_EXAMPLE = {
    "_links": {
        "self": {"href": ORDER_URL},
        "collection": {"href": f"/api/v2/shops/{SHOP_ID}/orders"},
        "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
        "sf:payments": {"href": f"{ORDER_URL}/payments"},
        "sf:customer": {"href": "/api/v2/users/me", "title": "you, the customer"},
        "sf:pay": {"href": f"{ORDER_URL}/payments", "title": "pay (POST, Idempotency-Key)"},
        "sf:cancel": {"href": f"{ORDER_URL}/cancel", "title": "cancel (POST)"},
        "curies": CURIES,
    },
    "id": ORDER_ID,
    "shop_id": SHOP_ID,
    "customer_id": "0190a1b2-c3d4-7e5f-8a9b-000000000001",
    "status": "pending",
    "total": EUR_37_50,
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "12 St James's Square",
        "city": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    },
    "customer_erased": False,
    "created_at": "2026-12-07T05:15:05.123456Z",
    "updated_at": "2026-12-07T05:15:05.123456Z",
    "expires_at": "2026-12-07T05:45:05.123456Z",
    "_embedded": {
        "lines": [
            {
                "_links": {"sf:product": {"href": f"/api/v2/shops/{SHOP_ID}/products/0190..."}},
                "product_id": "0190a1b2-c3d4-7e5f-8a9b-0000000000a1",
                "sku": "MUG-1",
                "name": "Mug",
                "unit_price": {"amount": "12.50", "currency": "EUR"},
                "quantity": 3,
                "line_total": EUR_37_50,
            }
        ],
        "payments": [],
    },
}
PAYMENT_EXAMPLE = {
    "_links": {
        "self": {"href": f"{ORDER_URL}/payments/{PAYMENT_ID}"},
        "collection": {"href": f"{ORDER_URL}/payments"},
        "sf:order": {"href": ORDER_URL},
        "curies": CURIES,
    },
    "id": PAYMENT_ID,
    "order_id": ORDER_ID,
    "status": "succeeded",
    "amount": EUR_37_50,
    "provider_reference": "pi_3Q2x...",
    "failure_code": None,
    "created_at": "2026-12-07T05:16:00.000000Z",
    "updated_at": "2026-12-07T05:16:01.000000Z",
}
ORDER_PARAMETERS = {
    "path__shop_id": "$response.body#/shop_id",
    "path__order_id": "$response.body#/id",
}
ORDER_LINKS = {
    "self": op_link(
        "get_order_api_v2_shops__shop_id__orders__order_id__get", "self", **ORDER_PARAMETERS
    ),
    "pay": op_link(
        "pay_order_api_v2_shops__shop_id__orders__order_id__payments_post",
        "sf:pay (POST)",
        {"payment_method": "pm_card_visa"},
        header__Idempotency_Key="$response.body#/id",
        **ORDER_PARAMETERS,
    ),
    "cancel": op_link(
        "cancel_order_api_v2_shops__shop_id__orders__order_id__cancel_post",
        "sf:cancel (POST)",
        **ORDER_PARAMETERS,
    ),
    "payments": op_link(
        "list_payments_api_v2_shops__shop_id__orders__order_id__payments_get",
        "sf:payments (GET)",
        **ORDER_PARAMETERS,
    ),
}
PAYMENT_PARAMETERS = {
    "path__shop_id": "$request.path.shop_id",
    "path__order_id": "$response.body#/order_id",
}


def _list_example(rel: str, path: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "_links": {"self": {"href": path}, "first": {"href": path}, "curies": CURIES},
        "count": 1,
        "_embedded": {rel: [item]},
    }


def payment_resource(shop_id: Any, payment: Any) -> Resource:
    order = order_path(shop_id, payment.order_id)
    return resource(
        {
            "self": link(v2(f"{order}/payments/{payment.id}")),
            "collection": link(v2(f"{order}/payments")),
            ORDER: link(v2(order)),
        },
        {
            "id": ident(payment.id),
            "order_id": ident(payment.order_id),
            "status": payment.status.value,
            "amount": money(payment.amount_cents, payment.currency),
            "provider_reference": payment.provider_reference,
            "failure_code": payment.failure_code,
            "created_at": timestamp(payment.created_at),
            "updated_at": timestamp(payment.updated_at),
        },
    )


async def _order_document(
    payments: PaymentService, viewer: OrderViewer, order: Any, resources: ResourcesDep
) -> Resource:
    """One order, its lines and its payments embedded, as ``viewer`` sees it."""
    (address,) = await open_addresses(payments.session, [order], vault=resources.vault)
    paid = await payments.list_for_order(viewer, order.id)
    return order_resource(
        order,
        order.lines,
        address,
        viewer,
        payments=[payment_resource(order.shop_id, p) for p in paid],
    )


def _stored(stored: StoredResponse, media_type: str) -> Response:
    """An idempotent operation's answer (stored as HAL) in the negotiated media type."""
    headers = {**stored.headers, "Vary": "Accept"}
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return HALResponse(
        transcode(stored.body, media_type), stored.status, headers=headers, media_type=media_type
    )


@router.post(
    "/shops/{shop_id}/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderV2,
    response_class=HALResponse,
    responses=problems(400, 401, 404, 409, 422, ok=201, example=ORDER_EXAMPLE, links=ORDER_LINKS),
    summary="Place an order (Idempotency-Key required); it offers sf:pay and sf:cancel",
)
async def create_order(
    shop_id: uuid.UUID,
    body: OrderIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    key: Annotated[str, Depends(require_key)],
    media_type: Accepted,
) -> Response:
    async def place() -> StoredResponse:
        orders = OrderService(
            session,
            shop_id,
            cache=resources.cache,
            vault=resources.vault,
            jobs=resources.jobs,
            orders=resources.settings.orders if resources.settings is not None else None,
        )
        order = await orders.place(principal, body)
        viewer = await orders.viewer(principal)
        (address,) = await open_addresses(session, [order], vault=resources.vault)
        document = order_resource(order, order.lines, address, viewer, payments=[])
        return StoredResponse(
            status.HTTP_201_CREATED,
            encode(document),
            {"Location": v2(order_path(shop_id, order.id)), **PERSONAL},
        )

    stored = await resources.idempotency.run(
        session,
        owner=str(principal.user_id),
        # v2's own scope: a key used on v1 does not replay v1's body here
        scope=f"POST {API_V2_PREFIX}/shops/{shop_id}/orders",
        key=key,
        payload=body.model_dump(mode="json"),
        work=place,
    )
    return _stored(stored, media_type)


@router.get(
    "/shops/{shop_id}/orders",
    response_model=OrderPageV2,
    response_class=HALResponse,
    responses={
        **problems(401, 404, 422),
        200: {
            "content": {
                HAL_JSON: {
                    "example": _list_example(
                        "orders", f"/api/v2/shops/{SHOP_ID}/orders", ORDER_EXAMPLE
                    )
                },
                EXPORT_NDJSON: {},
                EXPORT_CSV: {},
            },
            "description": "A page of orders (HAL, the default; JSON and MessagePack the same "
            "document), or with `Accept: application/x-ndjson` or `text/csv` every matching "
            "order, streamed (v1's export: NDJSON one order with its lines per line, CSV one "
            "row per order line).",
        },
    },
    summary="A page of orders: the shop's staff see all, a customer their own",
)
# the streams cost what v1's do: the same budget, charged on the same negotiation
@route_policy(rate="expensive", accept=(EXPORT_NDJSON, EXPORT_CSV), offers=LIST_OFFERS)
async def list_orders(
    request: Request,
    viewer: OrderReader,
    session: SessionDep,
    resources: ResourcesDep,
    params: PageParamsV2Dep,
    media_type: Annotated[str, accepted_among(LIST_OFFERS)],
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> Response:
    if media_type in (EXPORT_NDJSON, EXPORT_CSV):
        export = await OrderService(
            session, viewer.shop_id, cache=resources.cache, vault=resources.vault
        ).export(viewer, media_type=media_type, status=status_filter, after=params.after)
        # read on a session of its own once this request's has closed, as v1's
        return ClosingStreamingResponse(
            export.stream(resources.reads, min_lsn=lambda: read_after(request, resources.reads)),
            media_type=media_type,
            headers={
                "Cache-Control": NO_STORE,
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Vary": "Accept",
            },
        )
    rows, next_after = await OrderService(
        session, viewer.shop_id, cache=resources.cache, vault=resources.vault
    ).list_page(viewer, limit=params.limit, after=params.after, status=status_filter)
    addresses = await open_addresses(session, [order for order, _ in rows], vault=resources.vault)
    items = [
        order_resource(order, lines, address, viewer)
        for (order, lines), address in zip(rows, addresses, strict=True)
    ]
    body = page(
        request, params, next_after, "orders", items, {SHOP: link(v2(f"/shops/{viewer.shop_id}"))}
    )
    return hal_response(body, media_type, headers=PERSONAL)


@router.get(
    "/shops/{shop_id}/orders/{order_id}",
    response_model=OrderV2,
    response_class=HALResponse,
    responses=problems(401, 404, 422, example=ORDER_EXAMPLE),
    summary="An order with its lines, payments and the actions open to the caller",
)
async def get_order(
    order_id: uuid.UUID,
    viewer: OrderReader,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    payments = PaymentService.of(session, viewer.shop_id, resources)
    order = await OrderService(
        session, viewer.shop_id, cache=resources.cache, vault=resources.vault
    ).get(viewer, order_id)
    document = await _order_document(payments, viewer, order, resources)
    return hal_response(document, media_type, headers=PERSONAL)


@router.post(
    "/shops/{shop_id}/orders/{order_id}/cancel",
    response_model=OrderV2,
    response_class=HALResponse,
    responses=problems(
        401,
        404,
        409,
        422,
        example={**ORDER_EXAMPLE, "status": "cancelled"},
        links={"self": ORDER_LINKS["self"]},
    ),
    summary="Cancel an order (its customer while pending; staff while pending or paid, "
    "refunding a paid one); the target of sf:cancel and sf:refund",
)
async def cancel_order(
    order_id: uuid.UUID,
    viewer: OrderCanceller,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    payments = PaymentService.of(session, viewer.shop_id, resources)
    order = await payments.cancel_order(viewer, order_id)
    document = await _order_document(payments, viewer, order, resources)
    return hal_response(document, media_type, headers=PERSONAL)


@router.post(
    "/shops/{shop_id}/orders/{order_id}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentV2,
    response_class=HALResponse,
    responses=problems(
        400,
        401,
        402,
        404,
        409,
        422,
        504,
        ok=201,
        example=PAYMENT_EXAMPLE,
        links={
            "self": op_link(
                "get_payment_api_v2_shops__shop_id__orders__order_id__payments__payment_id__get",
                "self",
                path__payment_id="$response.body#/id",
                **PAYMENT_PARAMETERS,
            ),
            "order": op_link(
                "get_order_api_v2_shops__shop_id__orders__order_id__get",
                "sf:order",
                **PAYMENT_PARAMETERS,
            ),
        },
    ),
    summary="Pay an order (its customer; Idempotency-Key required); the target of sf:pay",
)
async def pay_order(
    order_id: uuid.UUID,
    body: PaymentIn,
    viewer: OrderPayer,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    key: Annotated[str, Depends(require_key)],
    media_type: Accepted,
) -> Response:
    shop_id = viewer.shop_id
    payments = PaymentService.of(session, shop_id, resources)

    def respond(payment: Payment) -> StoredResponse:
        return StoredResponse(
            status.HTTP_201_CREATED,
            encode(payment_resource(shop_id, payment)),
            {"Location": v2(f"{order_path(shop_id, order_id)}/payments/{payment.id}"), **PERSONAL},
        )

    async def pay(attempt: uuid.UUID) -> StoredResponse:
        return respond(await payments.pay(viewer, order_id, body.payment_method, attempt=attempt))

    stored = await resources.idempotency.run_attempt(
        session,
        owner=str(principal.user_id),
        scope=f"POST {API_V2_PREFIX}{order_path(shop_id, order_id)}/payments",
        key=key,
        payload=body.model_dump(mode="json"),
        work=pay,
        outcomes=PaymentAttempts(payments, order_id, respond),
    )
    return _stored(stored, media_type)


@router.get(
    "/shops/{shop_id}/orders/{order_id}/payments",
    response_model=PaymentListV2,
    response_class=HALResponse,
    responses=problems(
        401,
        404,
        422,
        example=_list_example("payments", f"{ORDER_URL}/payments", PAYMENT_EXAMPLE),
    ),
    summary="An order's payments, oldest first (its customer and the shop's staff)",
)
async def list_payments(
    order_id: uuid.UUID,
    viewer: PaymentsReader,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    shop_id = viewer.shop_id
    paid = await PaymentService.of(session, shop_id, resources).list_for_order(viewer, order_id)
    items = [payment_resource(shop_id, p) for p in paid]
    path = order_path(shop_id, order_id)
    body = resource(
        {"self": link(v2(f"{path}/payments")), ORDER: link(v2(path))},
        {"count": len(items)},
        {"payments": items},
    )
    return hal_response(body, media_type, headers=PERSONAL)


@router.get(
    "/shops/{shop_id}/orders/{order_id}/payments/{payment_id}",
    response_model=PaymentV2,
    response_class=HALResponse,
    responses=problems(401, 404, 422, example=PAYMENT_EXAMPLE),
    summary="One payment of an order",
)
async def get_payment(
    order_id: uuid.UUID,
    payment_id: uuid.UUID,
    viewer: PaymentsReader,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    shop_id = viewer.shop_id
    paid = await PaymentService.of(session, shop_id, resources).list_for_order(viewer, order_id)
    for payment in paid:
        if payment.id == payment_id:
            return hal_response(payment_resource(shop_id, payment), media_type, headers=PERSONAL)
    raise NotFound("No such payment of this order.")
