"""Shops in API v2 (HAL, decisions 0142 and 0206): the same service and authorization as v1.

A shop's links depend on the caller's role in it: anyone sees its products, orders and
catalog summary; anyone signed in its hold limits; its staff also the sales and bulk upserts;
its owners also the webhooks, the audit log and the membership template. A copy with a
role's links is personal (``no-store``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import Field

from storefront.auth.principal import Principal
from storefront.identity.deps import CurrentPrincipal, OptionalPrincipal
from storefront.shops.auth import ShopOwner
from storefront.shops.models import Role
from storefront.shops.schemas import MemberIn, ShopIn
from storefront.shops.service import STAFF_ROLES, ShopService
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.hal import (
    AUDIT,
    BULK,
    CATALOG_SUMMARY,
    CURIES,
    DELETE,
    MEMBER,
    OPEN_SHOP,
    ORDER_LIMITS,
    ORDERS,
    PRODUCTS,
    SALES,
    SHOP,
    WEBHOOKS,
    Accepted,
    HalOut,
    HALResponse,
    PageParamsV2Dep,
    Resource,
    hal_response,
    ident,
    link,
    op_link,
    page,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.responses import NO_STORE

router = APIRouter(tags=["shops (v2)"])


class ShopV2(HalOut):
    id: str
    name: str
    slug: str
    created_at: str = Field(description="RFC 3339, UTC")
    role: str | None = Field(None, description="the caller's role in the shop, if any")


class MyShopsPageV2(HalOut):
    count: int
    embedded: dict[str, list[ShopV2]] = Field(alias="_embedded")


class MemberV2(HalOut):
    shop_id: str
    user_id: str
    role: str
    created_at: str


SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
USER_ID = "0190a1b2-c3d4-7e5f-8a9b-000000000001"
SHOP_EXAMPLE = {
    "_links": {
        "self": {"href": f"/api/v2/shops/{SHOP_ID}"},
        "sf:products": {"href": f"/api/v2/shops/{SHOP_ID}/products"},
        "sf:orders": {"href": f"/api/v2/shops/{SHOP_ID}/orders"},
        "sf:catalog-summary": {"href": f"/api/v2/shops/{SHOP_ID}/catalog/summary"},
        "sf:order-limits": {"href": f"/api/v2/shops/{SHOP_ID}/order-limits"},
        "sf:sales": {"href": f"/api/v2/shops/{SHOP_ID}/sales"},
        "sf:bulk": {"href": f"/api/v2/shops/{SHOP_ID}/products/bulk"},
        "sf:webhooks": {"href": f"/api/v2/shops/{SHOP_ID}/webhooks"},
        "sf:audit": {"href": f"/api/v2/shops/{SHOP_ID}/audit-events"},
        "sf:member": {"href": f"/api/v2/shops/{SHOP_ID}/members/{{user_id}}", "templated": True},
        "curies": CURIES,
    },
    "id": SHOP_ID,
    "name": "Ada's Mugs",
    "slug": "adas-mugs",
    "created_at": "2026-12-07T05:15:05.123456Z",
    "role": "owner",
}


def shop_resource(shop: Any, role: Role | None = None, signed_in: bool = False) -> Resource:
    """The shop with the links its caller may follow (``role``: theirs in it, if any)."""
    path = f"/shops/{shop.id}"
    links: dict[str, Any] = {
        "self": link(v2(path)),
        PRODUCTS: link(v2(f"{path}/products"), title="list (GET); add one, staff (POST)"),
        ORDERS: link(v2(f"{path}/orders"), title="place an order (POST); list (GET)"),
        CATALOG_SUMMARY: link(v2(f"{path}/catalog/summary")),
    }
    if signed_in or role is not None:
        links[ORDER_LIMITS] = link(v2(f"{path}/order-limits"))
    if role in STAFF_ROLES:
        links[SALES] = link(v2(f"{path}/sales"))
        links[BULK] = link(v2(f"{path}/products/bulk"), title="upsert by sku (POST)")
    if role is Role.owner:
        links[WEBHOOKS] = link(v2(f"{path}/webhooks"), title="list (GET); subscribe (POST)")
        links[AUDIT] = link(v2(f"{path}/audit-events"))
        links[MEMBER] = link(
            v2(f"{path}/members/{{user_id}}"),
            templated=True,
            title="add or change (PUT {role}); remove (DELETE)",
        )
    properties: dict[str, Any] = {
        "id": ident(shop.id),
        "name": shop.name,
        "slug": shop.slug,
        "created_at": timestamp(shop.created_at),
    }
    if role is not None:
        properties["role"] = role.value
    return resource(links, properties)


def _personal(principal: Principal | None) -> dict[str, str]:
    # the links depend on the caller: the anonymous copy varies by the token too
    if principal is not None:
        return {"Cache-Control": NO_STORE, "Vary": "Accept, Authorization"}
    return {"Vary": "Accept, Authorization"}


@router.post(
    "/shops",
    status_code=status.HTTP_201_CREATED,
    response_model=ShopV2,
    response_class=HALResponse,
    responses=problems(
        401,
        409,
        422,
        ok=201,
        example=SHOP_EXAMPLE,
        links={
            "self": op_link(
                "get_shop_api_v2_shops__shop_id__get", "self", path__shop_id="$response.body#/id"
            ),
            "add-product": op_link(
                "create_product_api_v2_shops__shop_id__products_post",
                "sf:products (POST): add a product",
                path__shop_id="$response.body#/id",
            ),
            "orders": op_link(
                "list_orders_api_v2_shops__shop_id__orders_get",
                "sf:orders (GET)",
                path__shop_id="$response.body#/id",
            ),
        },
    ),
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
        shop_resource(shop, Role.owner, signed_in=True),
        media_type,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": v2(f"/shops/{shop.id}"), "Cache-Control": NO_STORE},
    )


@router.get(
    "/shops/{shop_id}",
    response_model=ShopV2,
    response_class=HALResponse,
    responses=problems(401, 404, 422, example=SHOP_EXAMPLE),
    summary="A shop, with the links its caller's role opens (products, orders, management)",
)
async def get_shop(
    shop_id: uuid.UUID, principal: OptionalPrincipal, session: SessionDep, media_type: Accepted
) -> HALResponse:
    shops = ShopService(session)
    shop = await shops.get(shop_id)
    role = await shops.role_of(shop_id, principal)
    return hal_response(
        shop_resource(shop, role, signed_in=principal is not None),
        media_type,
        headers=_personal(principal),
    )


def member_resource(membership: Any) -> Resource:
    shop = f"/shops/{membership.shop_id}"
    path = f"{shop}/members/{membership.user_id}"
    return resource(
        {
            MEMBER: link(v2(path), title="change the role (PUT)"),
            DELETE: link(v2(path), title="remove (DELETE)"),
            SHOP: link(v2(shop)),
        },
        {
            "shop_id": ident(membership.shop_id),
            "user_id": ident(membership.user_id),
            "role": membership.role.value,
            "created_at": timestamp(membership.created_at),
        },
    )


@router.put(
    "/shops/{shop_id}/members/{user_id}",
    response_model=MemberV2,
    response_class=HALResponse,
    responses=problems(
        401,
        403,
        404,
        409,
        example={
            "_links": {
                "sf:member": {"href": f"/api/v2/shops/{SHOP_ID}/members/{USER_ID}"},
                "sf:delete": {"href": f"/api/v2/shops/{SHOP_ID}/members/{USER_ID}"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "curies": CURIES,
            },
            "shop_id": SHOP_ID,
            "user_id": USER_ID,
            "role": "staff",
            "created_at": "2026-12-07T05:15:05.123456Z",
        },
    ),
    summary="Add a member or change their role (owners; the target of `sf:member`)",
)
async def put_member(
    user_id: uuid.UUID, body: MemberIn, owner: ShopOwner, session: SessionDep, media_type: Accepted
) -> HALResponse:
    membership = await ShopService(session).set_member(
        owner.principal, owner.shop_id, user_id, body.role
    )
    return hal_response(
        member_resource(membership), media_type, headers={"Cache-Control": NO_STORE}
    )


@router.delete(
    "/shops/{shop_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409),
    summary="Remove a member (owners); the last owner stays (409)",
)
async def delete_member(user_id: uuid.UUID, owner: ShopOwner, session: SessionDep) -> Response:
    await ShopService(session).remove_member(owner.principal, owner.shop_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/users/me/shops",
    response_model=MyShopsPageV2,
    response_class=HALResponse,
    responses=problems(
        401,
        example={
            "_links": {
                "self": {"href": "/api/v2/users/me/shops"},
                "first": {"href": "/api/v2/users/me/shops"},
                "sf:open-shop": {"href": "/api/v2/shops"},
                "curies": CURIES,
            },
            "count": 1,
            "_embedded": {"shops": [SHOP_EXAMPLE]},
        },
    ),
    summary="The shops the caller belongs to, each with the caller's role and its links",
)
async def my_shops(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    params: PageParamsV2Dep,
    media_type: Accepted,
) -> HALResponse:
    rows, next_after = await ShopService(session).memberships_page(
        principal, limit=params.limit, after=params.after
    )
    body = page(
        request,
        params,
        next_after,
        "shops",
        [shop_resource(shop, role, signed_in=True) for shop, role in rows],
        {OPEN_SHOP: link(v2("/shops"), title="open a shop (POST)")},
    )
    return hal_response(body, media_type, headers={"Cache-Control": NO_STORE})
