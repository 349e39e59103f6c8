from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from storefront.catalog.reads import CatalogReads
from storefront.catalog.schemas import (
    BulkIn,
    BulkOut,
    CatalogSummaryOut,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from storefront.catalog.service import CatalogService
from storefront.identity.deps import CurrentPrincipal
from storefront.platform.errors import PreconditionFailed
from storefront.platform.http import etag
from storefront.platform.http.cached import cached_response
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.pagination import Page, PageParamsDep, next_link
from storefront.platform.http.responses import PROBLEM_RESPONSES
from storefront.shops.service import ShopService

router = APIRouter(tags=["catalog"])


def _representation(product: object) -> tuple[bytes, str]:
    body = ProductOut.model_validate(product).model_dump_json().encode()
    return body, etag.strong_etag(body)


CACHED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
}
IfNoneMatch = Annotated[str | None, Header(max_length=1024)]


@router.get(
    "/shops/{shop_id}/products", response_model=Page[ProductOut], responses=CACHED_RESPONSES
)
async def list_products(
    shop_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    page: PageParamsDep,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    entry, source = await CatalogReads(runtime, shop_id).listing(
        limit=page.limit, after=page.after, q=q, category=category
    )
    headers = {}
    if next_cursor := entry.meta.get("next_cursor"):
        headers["Link"] = next_link(request, next_cursor)
    return cached_response(entry, source, if_none_match, headers=headers)


@router.get(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductOut,
    responses=CACHED_RESPONSES,
)
async def get_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    runtime: RuntimeDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    entry, source = await CatalogReads(runtime, shop_id).product(product_id)
    return cached_response(entry, source, if_none_match)


@router.get(
    "/shops/{shop_id}/catalog/summary",
    response_model=CatalogSummaryOut,
    responses=CACHED_RESPONSES,
    summary="Counts and price range per category of the shop's active catalog",
    description=(
        "Anyone may read it. One entry per (category, currency) of the shop's active "
        "products: how many, how many have stock, units in stock, lowest and highest price "
        "in minor units. The result is cached (query-result cache) until the next write to "
        "the shop's catalog, including stock taken or returned by orders; the response "
        "carries a strong `ETag` and `If-None-Match` gives 304."
    ),
)
async def catalog_summary(
    shop_id: uuid.UUID, runtime: RuntimeDep, if_none_match: IfNoneMatch = None
) -> Response:
    entry, source = await CatalogReads(runtime, shop_id).summary()
    return cached_response(entry, source, if_none_match)


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
