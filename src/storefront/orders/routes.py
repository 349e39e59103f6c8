from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from storefront.idempotency import StoredResponse
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.negotiation import negotiate
from storefront.orders.auth import OrderReader
from storefront.orders.export import CSV as EXPORT_CSV
from storefront.orders.export import NDJSON as EXPORT_NDJSON
from storefront.orders.limit_routes import router as limits_router
from storefront.orders.models import OrderStatus
from storefront.orders.schemas import OrderIn, OrderOut
from storefront.orders.serialise import order_json, orders_out, orders_page_json
from storefront.orders.service import OrderService
from storefront.web.deps import ResourcesDep, SessionDep, read_after
from storefront.web.idempotency import require_key, stored_response
from storefront.web.pagination import Page, PageParamsDep, encode_cursor, set_next_link
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES, no_store
from storefront.web.route_policy import route_policy
from storefront.web.streaming import ClosingStreamingResponse

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
    resources: ResourcesDep,
    key: Annotated[str, Depends(require_key)],
) -> Response:
    async def place() -> StoredResponse:
        order = await OrderService(
            session,
            shop_id,
            cache=resources.cache,
            vault=resources.vault,
            jobs=resources.jobs,
            orders=resources.settings.orders if resources.settings is not None else None,
        ).place(principal, body)
        return StoredResponse(
            status.HTTP_201_CREATED,
            await order_json(session, order, vault=resources.vault),
            {
                "Location": f"{API_PREFIX}/shops/{shop_id}/orders/{order.id}",
                "Cache-Control": "no-store",
            },
        )

    stored = await resources.idempotency.run(
        session,
        owner=str(principal.user_id),
        # the canonical path, not the raw one: /shops/<UPPER-CASE or un-hyphenated id>/orders
        # is the same operation and must not run twice under one key
        scope=f"POST {API_PREFIX}/shops/{shop_id}/orders",
        key=key,
        payload=body.model_dump(mode="json"),
        work=place,
    )
    return stored_response(stored)


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
# negotiated as the route does: the streams are expensive
@route_policy(rate="expensive", accept=(EXPORT_NDJSON, EXPORT_CSV), offers=LIST_MEDIA_TYPES)
async def list_orders(
    request: Request,
    response: Response,
    viewer: OrderReader,
    session: SessionDep,
    resources: ResourcesDep,
    page: PageParamsDep,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> Page[OrderOut] | Response:
    media_type = negotiate(request.headers.get("accept"), LIST_MEDIA_TYPES)
    if media_type != JSON:
        export = await OrderService(
            session, viewer.shop_id, cache=resources.cache, vault=resources.vault
        ).export(viewer, media_type=media_type, status=status_filter, after=page.after)
        # the stream reads on a session of its own: this request's session (SessionDep) has
        # committed and closed before the first byte is sent
        return ClosingStreamingResponse(
            export.stream(resources.reads, min_lsn=lambda: read_after(request, resources.reads)),
            media_type=media_type,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Vary": "Accept",
            },
        )
    items, last = await OrderService(
        session, viewer.shop_id, cache=resources.cache, vault=resources.vault
    ).list_page(viewer, limit=page.limit, after=page.after, status=status_filter)
    next_cursor = encode_cursor(last) if last else None
    # the body is serialised here (the bytes of Page[OrderOut], see orders_page_json), so the
    # headers set on `response` are carried over as FastAPI would
    body = Response(
        await orders_page_json(session, items, next_cursor, vault=resources.vault), media_type=JSON
    )
    set_next_link(request, body, next_cursor)
    no_store(body)
    body.headers["Vary"] = "Accept"  # the same URL also serves the streamed exports
    body.raw_headers.extend(response.raw_headers)
    return body


@router.get(
    "/shops/{shop_id}/orders/{order_id}", response_model=OrderOut, responses=PROBLEM_RESPONSES
)
async def get_order(
    order_id: uuid.UUID,
    viewer: OrderReader,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> OrderOut:
    no_store(response)
    order = await OrderService(
        session, viewer.shop_id, cache=resources.cache, vault=resources.vault
    ).get(viewer, order_id)
    (out,) = await orders_out(session, [order], vault=resources.vault)
    return out


# POST /shops/{shop_id}/orders/{order_id}/cancel is served by payments/routes.py: cancelling
# a paid order refunds it, and payments sits above orders (decision 0137)


# a shop's hold limits (decision 0118)
router.include_router(limits_router)
