"""Shops in API v2 (HAL, decision 0142): the same service and authorization as v1."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from storefront.identity.deps import CurrentPrincipal
from storefront.shops.schemas import ShopIn
from storefront.shops.service import ShopService
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.hal import (
    ORDERS,
    PRODUCTS,
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

router = APIRouter(tags=["shops (v2)"])


class ShopV2(HalOut):
    id: str
    name: str
    slug: str
    created_at: str = Field(description="RFC 3339, UTC")


def shop_resource(shop: Any) -> Resource:
    path = f"/shops/{shop.id}"
    return resource(
        {
            "self": link(v2(path)),
            PRODUCTS: link(v2(f"{path}/products")),
            ORDERS: link(v2(f"{path}/orders"), title="place an order (POST); list (GET)"),
        },
        {
            "id": ident(shop.id),
            "name": shop.name,
            "slug": shop.slug,
            "created_at": timestamp(shop.created_at),
        },
    )


@router.post(
    "/shops",
    status_code=status.HTTP_201_CREATED,
    response_model=ShopV2,
    response_class=HALResponse,
    responses=problems(401, 409, 422),
    summary="Open a shop; the caller becomes its owner",
)
async def create_shop(
    body: ShopIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    settings = resources.settings
    shop = await ShopService(session).create(
        principal,
        name=body.name,
        slug=body.slug,
        max_owned=settings.max_owned_shops_per_user if settings is not None else None,
    )
    return hal_response(
        shop_resource(shop),
        media_type,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": v2(f"/shops/{shop.id}")},
    )


@router.get(
    "/shops/{shop_id}",
    response_model=ShopV2,
    response_class=HALResponse,
    responses=problems(404, 422),
    summary="A shop, with links to its products and orders",
)
async def get_shop(shop_id: uuid.UUID, session: SessionDep, media_type: Accepted) -> HALResponse:
    shop = await ShopService(session).get(shop_id)
    return hal_response(shop_resource(shop), media_type)
