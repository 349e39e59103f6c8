"""Products in API v2 (HAL, decision 0142): the catalog's service and authorization, as v1.

A product's links depend on who asks: the shop's staff see ``sf:archive``. Reads are public;
a token, when sent, is checked as everywhere."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import Field

from storefront.catalog.auth import CatalogEditor
from storefront.catalog.schemas import MAX_CATEGORY_LENGTH, MAX_SEARCH_LENGTH, ProductIn
from storefront.catalog.service import CatalogService
from storefront.identity.deps import OptionalPrincipal
from storefront.kit.inputs import STORABLE
from storefront.kit.money import money
from storefront.shops.service import ShopService
from storefront.web.deps import ReadSessionDep, ResourcesDep, SessionDep
from storefront.web.hal import (
    ARCHIVE,
    SHOP,
    Accepted,
    HalOut,
    HALResponse,
    MoneyOut,
    PageParamsV2Dep,
    Resource,
    hal_response,
    ident,
    link,
    page,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.responses import NO_STORE

router = APIRouter(tags=["catalog (v2)"])


class ProductV2(HalOut):
    id: str
    shop_id: str
    sku: str
    name: str
    description: str
    price: MoneyOut
    stock: int
    category: str
    status: str
    version: int
    created_at: str
    updated_at: str


class ProductPageV2(HalOut):
    count: int
    embedded: dict[str, list[ProductV2]] = Field(alias="_embedded")


def product_resource(product: Any, *, staff: bool) -> Resource:
    shop = f"/shops/{product.shop_id}"
    path = f"{shop}/products/{product.id}"
    links: dict[str, Any] = {
        "self": link(v2(path)),
        "collection": link(v2(f"{shop}/products")),
        SHOP: link(v2(shop)),
    }
    if staff and product.status.value == "active":
        links[ARCHIVE] = link(v2(path), title="archive (DELETE)")
    return resource(
        links,
        {
            "id": ident(product.id),
            "shop_id": ident(product.shop_id),
            "sku": product.sku,
            "name": product.name,
            "description": product.description,
            "price": money(product.price_cents, product.currency),
            "stock": product.stock,
            "category": product.category,
            "status": product.status.value,
            "version": product.version,
            "created_at": timestamp(product.created_at),
            "updated_at": timestamp(product.updated_at),
        },
    )


def _personal(staff: bool) -> dict[str, str]:
    # the links differ for staff: never shared from a cache
    return {"Cache-Control": NO_STORE, "Vary": "Accept, Authorization"} if staff else {}


@router.get(
    "/shops/{shop_id}/products",
    response_model=ProductPageV2,
    response_class=HALResponse,
    responses=problems(401, 404, 422),
    summary="A page of the shop's active products (first, next and prev links)",
)
async def list_products(
    shop_id: uuid.UUID,
    request: Request,
    principal: OptionalPrincipal,
    session: ReadSessionDep,
    resources: ResourcesDep,
    params: PageParamsV2Dep,
    media_type: Accepted,
    q: Annotated[str | None, Query(min_length=1, max_length=MAX_SEARCH_LENGTH), STORABLE] = None,
    category: Annotated[
        str | None, Query(min_length=1, max_length=MAX_CATEGORY_LENGTH), STORABLE
    ] = None,
) -> Response:
    shops = ShopService(session)
    await shops.get(shop_id)  # an unknown shop is 404, as in v1
    staff = await shops.is_staff(shop_id, principal)
    items, next_after = await CatalogService(session, shop_id, resources.cache).list_page(
        limit=params.limit, after=params.after, q=q, category=category
    )
    body = page(
        request,
        params,
        next_after,
        "products",
        [product_resource(p, staff=staff) for p in items],
        {SHOP: link(v2(f"/shops/{shop_id}"))},
    )
    return hal_response(body, media_type, headers=_personal(staff))


@router.get(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductV2,
    response_class=HALResponse,
    responses=problems(401, 404, 422),
    summary="A product; its staff also see the archive action",
)
async def get_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    principal: OptionalPrincipal,
    session: ReadSessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    product = await CatalogService(session, shop_id, resources.cache).get(product_id)
    staff = await ShopService(session).is_staff(shop_id, principal)
    return hal_response(
        product_resource(product, staff=staff), media_type, headers=_personal(staff)
    )


@router.post(
    "/shops/{shop_id}/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductV2,
    response_class=HALResponse,
    responses=problems(401, 403, 404, 409, 422),
    summary="Add a product (the shop's staff); a duplicate sku is 409",
)
async def create_product(
    body: ProductIn,
    editor: CatalogEditor,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    product = await CatalogService(session, editor.shop_id, resources.cache).create(body)
    return hal_response(
        product_resource(product, staff=True),
        media_type,
        status_code=status.HTTP_201_CREATED,
        headers={
            "Location": v2(f"/shops/{editor.shop_id}/products/{product.id}"),
            **_personal(True),
        },
    )


@router.delete(
    "/shops/{shop_id}/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404),
    summary="Archive a product (the shop's staff): gone from listings, kept for orders",
)
async def archive_product(
    product_id: uuid.UUID, editor: CatalogEditor, session: SessionDep, resources: ResourcesDep
) -> None:
    await CatalogService(session, editor.shop_id, resources.cache).archive(product_id)
