"""A shop's hold limits in API v2 (HAL, decisions 0118, 0142 and 0206): anyone signed in
reads them; the shop's owners and staff see ``edit`` and change them. v1's service and
dependencies."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from storefront.identity.deps import CurrentPrincipal
from storefront.orders.auth import HoldLimitsEditor
from storefront.orders.limits import LIMIT_NAMES, OrderLimitsOut, OrderLimitsPatch, limits_out
from storefront.settings import OrdersSettings
from storefront.shops.service import ShopService
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.hal import (
    CURIES,
    EDIT,
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
    v2,
)
from storefront.web.responses import PERSONAL

router = APIRouter(tags=["shops (v2)"])
SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
LIMITS_EXAMPLE = {
    "_links": {
        "self": {"href": f"/api/v2/shops/{SHOP_ID}/order-limits"},
        "edit": {"href": f"/api/v2/shops/{SHOP_ID}/order-limits"},
        "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
        "curies": CURIES,
    },
    "shop_id": SHOP_ID,
    "max_line_quantity": 20,
    "max_order_units": 50,
    "max_pending_units": 100,
    "max_pending_stock_percent": 50,
    "stock_share_floor_units": 2,
    "payment_window_minutes": 30,
    "shop_set": ["max_line_quantity"],
}


class OrderLimitsV2(HalOut):
    shop_id: str
    max_line_quantity: int
    max_order_units: int
    max_pending_units: int
    max_pending_stock_percent: int
    stock_share_floor_units: int
    payment_window_minutes: int
    shop_set: list[str]


def _defaults(resources: ResourcesDep) -> OrdersSettings:
    return resources.settings.orders if resources.settings is not None else OrdersSettings()


def limits_resource(out: OrderLimitsOut, editor: bool) -> Resource:
    shop = f"/shops/{out.shop_id}"
    links: dict[str, Any] = {"self": link(v2(f"{shop}/order-limits")), SHOP: link(v2(shop))}
    if editor:
        links[EDIT] = link(v2(f"{shop}/order-limits"), title="change (PATCH; null: default)")
    properties = out.model_dump()
    properties["shop_id"] = ident(out.shop_id)
    return resource(links, properties)


@router.get(
    "/shops/{shop_id}/order-limits",
    response_model=OrderLimitsV2,
    response_class=HALResponse,
    responses=problems(401, 404, example=LIMITS_EXAMPLE),
    summary="What one customer may hold unpaid in this shop; its staff also see `edit`",
)
async def get_order_limits(
    shop_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    shops = ShopService(session)
    shop = await shops.get(shop_id)
    editor = await shops.is_staff(shop_id, principal)
    return hal_response(
        limits_resource(limits_out(shop, _defaults(resources)), editor),
        media_type,
        headers=PERSONAL,
    )


@router.patch(
    "/shops/{shop_id}/order-limits",
    response_model=OrderLimitsV2,
    response_class=HALResponse,
    responses=problems(401, 403, 404, example=LIMITS_EXAMPLE),
    summary="Change the shop's hold limits (owners and staff; the target of `edit`)",
    description="A field left out stays as it is; `null` goes back to the platform default. "
    "Orders placed afterwards are checked against the new limits; pending orders are kept.",
)
async def patch_order_limits(
    body: OrderLimitsPatch,
    editor: HoldLimitsEditor,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    values = {name: getattr(body, name) for name in LIMIT_NAMES if name in body.model_fields_set}
    shop = await ShopService(session).change_hold_limits(editor.shop_id, values)
    return hal_response(
        limits_resource(limits_out(shop, _defaults(resources)), True), media_type, headers=PERSONAL
    )
