"""A shop's hold limits (decision 0118): ``GET`` for anyone signed in (customers may see what
they can order), ``PATCH`` for the shop's owners and staff."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from storefront.identity.deps import CurrentPrincipal
from storefront.orders.auth import HoldLimitsEditor
from storefront.orders.limits import LIMIT_NAMES, OrderLimitsOut, OrderLimitsPatch, limits_out
from storefront.settings import OrdersSettings
from storefront.shops.service import ShopService
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.responses import PROBLEM_RESPONSES, no_store

router = APIRouter(tags=["shops"])


def _defaults(resources: ResourcesDep) -> OrdersSettings:
    return resources.settings.orders if resources.settings is not None else OrdersSettings()


@router.get(
    "/shops/{shop_id}/order-limits",
    response_model=OrderLimitsOut,
    responses=PROBLEM_RESPONSES,
    summary="What one customer may hold unpaid in this shop, and the payment window",
)
async def get_order_limits(
    shop_id: uuid.UUID,
    _principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> OrderLimitsOut:
    no_store(response)
    shop = await ShopService(session).get(shop_id)
    return limits_out(shop, _defaults(resources))


@router.patch(
    "/shops/{shop_id}/order-limits",
    response_model=OrderLimitsOut,
    responses=PROBLEM_RESPONSES,
    summary="Change the shop's hold limits (owners and staff)",
    description="A field left out stays as it is; `null` goes back to the platform default. "
    "Orders placed afterwards are checked against the new limits; pending orders are kept.",
)
async def patch_order_limits(
    body: OrderLimitsPatch,
    editor: HoldLimitsEditor,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> OrderLimitsOut:
    no_store(response)
    values = {name: getattr(body, name) for name in LIMIT_NAMES if name in body.model_fields_set}
    shop = await ShopService(session).change_hold_limits(editor.shop_id, values)
    return limits_out(shop, _defaults(resources))
