"""A shop's webhook subscriptions in API v2 (HAL, decisions 0142 and 0206): v1's service and
its owners-only dependency; each subscription links its deletion."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import Field

from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.hal import (
    CURIES,
    DELETE,
    SHOP,
    Accepted,
    HalOut,
    HALResponse,
    Resource,
    hal_response,
    ident,
    link,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.responses import PERSONAL
from storefront.webhooks.auth import WebhookManager
from storefront.webhooks.schemas import WebhookIn
from storefront.webhooks.service import WebhookService

router = APIRouter(tags=["webhooks (v2)"])
SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ENDPOINT_ID = "0190a1b2-c3d4-7e5f-8a9b-0000000000b1"
ENDPOINT_EXAMPLE = {
    "_links": {
        "sf:delete": {"href": f"/api/v2/shops/{SHOP_ID}/webhooks/{ENDPOINT_ID}"},
        "collection": {"href": f"/api/v2/shops/{SHOP_ID}/webhooks"},
        "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
        "curies": CURIES,
    },
    "id": ENDPOINT_ID,
    "shop_id": SHOP_ID,
    "url": "https://hooks.example.com/storefront",
    "events": ["order.paid", "order.cancelled"],
    "is_active": True,
    "disabled_reason": None,
    "created_at": "2026-12-07T05:15:05.123456Z",
}


class WebhookV2(HalOut):
    id: str
    shop_id: str
    url: str
    events: list[str]
    is_active: bool
    disabled_reason: str | None
    created_at: str


class WebhookCreatedV2(WebhookV2):
    secret: str = Field(description="signs the deliveries; shown only in this response")


class WebhookListV2(HalOut):
    count: int
    embedded: dict[str, list[WebhookV2]] = Field(alias="_embedded")


def endpoint_resource(endpoint: Any) -> Resource:
    shop = f"/shops/{endpoint.shop_id}"
    return resource(
        {
            DELETE: link(v2(f"{shop}/webhooks/{endpoint.id}"), title="unsubscribe (DELETE)"),
            "collection": link(v2(f"{shop}/webhooks")),
            SHOP: link(v2(shop)),
        },
        {
            "id": ident(endpoint.id),
            "shop_id": ident(endpoint.shop_id),
            "url": endpoint.url,
            "events": [str(e) for e in endpoint.events],
            "is_active": endpoint.is_active,
            "disabled_reason": endpoint.disabled_reason,
            "created_at": timestamp(endpoint.created_at),
        },
    )


@router.post(
    "/shops/{shop_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreatedV2,
    response_class=HALResponse,
    responses=problems(
        401, 403, 404, 409, ok=201, example={**ENDPOINT_EXAMPLE, "secret": "whsec_3q2+7w=="}
    ),
    summary="Subscribe an HTTPS endpoint to order events (owners); the secret is shown once",
)
async def create_webhook(
    body: WebhookIn,
    manager: WebhookManager,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    shop_id = manager.shop_id
    endpoint, secret = await WebhookService(session, resources).create(
        manager.principal, shop_id, body
    )
    document = endpoint_resource(endpoint)
    document["secret"] = secret
    return hal_response(
        document,
        media_type,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": v2(f"/shops/{shop_id}/webhooks/{endpoint.id}"), **PERSONAL},
    )


@router.get(
    "/shops/{shop_id}/webhooks",
    response_model=WebhookListV2,
    response_class=HALResponse,
    responses=problems(
        401,
        403,
        404,
        example={
            "_links": {
                "self": {"href": f"/api/v2/shops/{SHOP_ID}/webhooks"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "curies": CURIES,
            },
            "count": 1,
            "_embedded": {"webhooks": [ENDPOINT_EXAMPLE]},
        },
    ),
    summary="The shop's webhook subscriptions (owners); POST here subscribes another",
)
async def list_webhooks(
    manager: WebhookManager, session: SessionDep, resources: ResourcesDep, media_type: Accepted
) -> HALResponse:
    endpoints = await WebhookService(session, resources).endpoints(
        manager.principal, manager.shop_id
    )
    shop = f"/shops/{manager.shop_id}"
    items = [endpoint_resource(e) for e in endpoints]
    document = resource(
        {"self": link(v2(f"{shop}/webhooks")), SHOP: link(v2(shop))},
        {"count": len(items)},
        {"webhooks": items},
    )
    return hal_response(document, media_type, headers=PERSONAL)


@router.delete(
    "/shops/{shop_id}/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404),
    summary="Unsubscribe an endpoint (owners; the target of `sf:delete`)",
)
async def delete_webhook(
    endpoint_id: uuid.UUID, manager: WebhookManager, session: SessionDep, resources: ResourcesDep
) -> Response:
    await WebhookService(session, resources).delete(manager.principal, manager.shop_id, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
