from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from storefront.catalog.schemas import BulkIn, BulkOut, ProductIn, ProductOut, ProductPatch
from storefront.catalog.service import CatalogService
from storefront.identity.deps import CurrentPrincipal
from storefront.platform.errors import PreconditionFailed
from storefront.platform.http import etag
from storefront.platform.http.deps import SessionDep
from storefront.platform.http.pagination import Page, PageParamsDep, encode_cursor, set_next_link
from storefront.platform.http.responses import PROBLEM_RESPONSES
from storefront.shops.service import ShopService

router = APIRouter(tags=["catalog"])
REVALIDATE = "no-cache"


def _representation(product: object) -> tuple[bytes, str]:
    body = ProductOut.model_validate(product).model_dump_json().encode()
    return body, etag.strong_etag(body)


@router.get(
    "/shops/{shop_id}/products", response_model=Page[ProductOut], responses=PROBLEM_RESPONSES
)
async def list_products(
    shop_id: uuid.UUID,
    request: Request,
    response: Response,
    session: SessionDep,
    page: PageParamsDep,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Page[ProductOut]:
    await ShopService(session).get(shop_id)
    items, last = await CatalogService(session, shop_id).list_page(
        limit=page.limit, after=page.after, q=q, category=category
    )
    next_cursor = encode_cursor(last) if last else None
    set_next_link(request, response, next_cursor)
    return Page[ProductOut](
        items=[ProductOut.model_validate(p) for p in items], next_cursor=next_cursor
    )


@router.get(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductOut,
    responses={**PROBLEM_RESPONSES, 304: {"description": "Not modified"}},
)
async def get_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    product = await CatalogService(session, shop_id).get(product_id)
    body, tag = _representation(product)
    headers = {"ETag": tag, "Cache-Control": REVALIDATE}
    if etag.none_match(if_none_match, tag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.post(
    "/shops/{shop_id}/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    responses=PROBLEM_RESPONSES,
)
async def create_product(
    shop_id: uuid.UUID, body: ProductIn, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    await ShopService(session).require_staff(shop_id, principal)
    product = await CatalogService(session, shop_id).create(body)
    payload, tag = _representation(product)
    return Response(
        payload,
        status_code=status.HTTP_201_CREATED,
        media_type="application/json",
        headers={"ETag": tag, "Location": f"/api/v1/shops/{shop_id}/products/{product.id}"},
    )


@router.patch(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductOut,
    responses=PROBLEM_RESPONSES,
)
async def update_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    body: ProductPatch,
    principal: CurrentPrincipal,
    session: SessionDep,
    if_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    await ShopService(session).require_staff(shop_id, principal)
    catalog = CatalogService(session, shop_id)
    current = await catalog.get(product_id)
    _, current_tag = _representation(current)
    if not etag.match(if_match, current_tag):
        raise PreconditionFailed("If-Match does not match the product's current ETag.")
    updated = await catalog.update(current, body.changes(), expected_version=current.version)
    payload, tag = _representation(updated)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


@router.delete(
    "/shops/{shop_id}/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def archive_product(
    shop_id: uuid.UUID, product_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> None:
    await ShopService(session).require_staff(shop_id, principal)
    await CatalogService(session, shop_id).archive(product_id)


@router.post("/shops/{shop_id}/products/bulk", response_model=BulkOut, responses=PROBLEM_RESPONSES)
async def bulk_upsert(
    shop_id: uuid.UUID, body: BulkIn, principal: CurrentPrincipal, session: SessionDep
) -> BulkOut:
    await ShopService(session).require_staff(shop_id, principal)
    created, updated = await CatalogService(session, shop_id).upsert_many(body.items)
    return BulkOut(created=created, updated=updated)
