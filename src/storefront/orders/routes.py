from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from storefront.identity.deps import CurrentPrincipal
from storefront.orders.export import CSV as EXPORT_CSV
from storefront.orders.export import NDJSON as EXPORT_NDJSON
from storefront.orders.models import OrderStatus
from storefront.orders.schemas import OrderIn, OrderOut
from storefront.orders.sealing import orders_out, orders_page_json
from storefront.orders.service import OrderService
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.negotiation import negotiate
from storefront.platform.http.pagination import Page, PageParamsDep, encode_cursor, set_next_link
from storefront.platform.http.responses import PROBLEM_RESPONSES, no_store
from storefront.platform.http.streaming import ClosingStreamingResponse
from storefront.platform.idempotency import StoredResponse, require_key

router = APIRouter(tags=["orders"])
JSON = "application/json"
# most preferred first: JSON stays the default (no Accept, */*, application/*)
LIST_MEDIA_TYPES = (JSON, EXPORT_NDJSON, EXPORT_CSV)


@router.post(
    "/shops/{shop_id}/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses=PROBLEM_RESPONSES,
    summary="Place an order (requires an Idempotency-Key header)",
)
async def create_order(
    shop_id: uuid.UUID,
    body: OrderIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[str, Depends(require_key)],
) -> Response:
    async def place() -> StoredResponse:
        order = await OrderService(session, shop_id, jobs=runtime.jobs).place(principal, body)
        (out,) = await orders_out(session, [order])
        return StoredResponse(
            status.HTTP_201_CREATED,
            out.model_dump_json().encode(),
            {"Location": f"/api/v1/shops/{shop_id}/orders/{order.id}", "Cache-Control": "no-store"},
        )

    return await runtime.idempotency.run(
        session,
        owner=str(principal.user_id),
        # the canonical path, not the raw one: /shops/<UPPER-CASE or un-hyphenated id>/orders
        # is the same operation and must not run twice under one key
        scope=f"POST /api/v1/shops/{shop_id}/orders",
        key=key,
        payload=body.model_dump(mode="json"),
        work=place,
    )


@router.get(
    "/shops/{shop_id}/orders",
    response_model=Page[OrderOut],
    responses={
        **PROBLEM_RESPONSES,
        200: {
            "description": "A page of orders (JSON, the default), or with `Accept: "
            "application/x-ndjson` or `text/csv` every matching order, streamed (NDJSON: one "
            "order with its lines per line; CSV: one row per order line). `limit` does not "
            "apply to a stream; `cursor` resumes one after that order.",
            "content": {EXPORT_NDJSON: {}, EXPORT_CSV: {}},
        },
        406: {**PROBLEM_RESPONSES[400], "description": "No acceptable media type"},
    },
)
async def list_orders(
    shop_id: uuid.UUID,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    page: PageParamsDep,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> Page[OrderOut] | Response:
    media_type = negotiate(request.headers.get("accept"), LIST_MEDIA_TYPES)
    if media_type != JSON:
        export = await OrderService(session, shop_id).export(
            principal, media_type=media_type, status=status_filter, after=page.after
        )
        # the stream reads on a session of its own: this request's session (SessionDep) has
        # committed and closed before the first byte is sent
        return ClosingStreamingResponse(
            export.stream(runtime.sessionmaker),
            media_type=media_type,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Vary": "Accept",
            },
        )
    items, last = await OrderService(session, shop_id).list_page(
        principal, limit=page.limit, after=page.after, status=status_filter
    )
    next_cursor = encode_cursor(last) if last else None
    # the body is serialised here (the bytes of Page[OrderOut], see orders_page_json), so the
    # headers set on `response` are carried over as FastAPI would
    body = Response(await orders_page_json(session, items, next_cursor), media_type=JSON)
    set_next_link(request, body, next_cursor)
    no_store(body)
    body.headers["Vary"] = "Accept"  # the same URL also serves the streamed exports
    body.raw_headers.extend(response.raw_headers)
    return body


@router.get(
    "/shops/{shop_id}/orders/{order_id}", response_model=OrderOut, responses=PROBLEM_RESPONSES
)
async def get_order(
    shop_id: uuid.UUID,
    order_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
) -> OrderOut:
    no_store(response)
    order = await OrderService(session, shop_id).get(principal, order_id)
    (out,) = await orders_out(session, [order])
    return out


@router.post(
    "/shops/{shop_id}/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses=PROBLEM_RESPONSES,
)
async def cancel_order(
    shop_id: uuid.UUID,
    order_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> OrderOut:
    no_store(response)
    order = await OrderService(session, shop_id, jobs=runtime.jobs).cancel(principal, order_id)
    (out,) = await orders_out(session, [order])
    return out
