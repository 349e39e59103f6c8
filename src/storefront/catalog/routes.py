from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from storefront.catalog.auth import CatalogEditor
from storefront.catalog.reads import CatalogReads, listing_hit, product_hit, summary_hit
from storefront.catalog.schemas import (
    MAX_CATEGORY_LENGTH,
    MAX_SEARCH_LENGTH,
    BulkIn,
    BulkOut,
    CatalogSummaryOut,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from storefront.catalog.service import CatalogService
from storefront.kit import etag
from storefront.kit.errors import PreconditionFailed
from storefront.kit.inputs import STORABLE
from storefront.web.cached import MAX_CONDITION_LENGTH, cached_response
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.pagination import Page, PageParamsDep, next_link
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES
from storefront.web.route_policy import route_policy

router = APIRouter(tags=["catalog"])


def _representation(product: object) -> tuple[bytes, str]:
    body = ProductOut.model_validate(product).model_dump_json().encode()
    return body, etag.strong_etag(body)


CACHED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
}
IfNoneMatch = Annotated[str | None, Header(max_length=MAX_CONDITION_LENGTH), STORABLE]


@router.get(
    "/shops/{shop_id}/products", response_model=Page[ProductOut], responses=CACHED_RESPONSES
)
@route_policy(cached=listing_hit)
async def list_products(
    shop_id: uuid.UUID,
    request: Request,
    resources: ResourcesDep,
    page: PageParamsDep,
    q: Annotated[str | None, Query(min_length=1, max_length=MAX_SEARCH_LENGTH), STORABLE] = None,
    category: Annotated[
        str | None, Query(min_length=1, max_length=MAX_CATEGORY_LENGTH), STORABLE
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    entry, source = await CatalogReads(resources, shop_id).listing(
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
@route_policy(cached=product_hit)
async def get_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    resources: ResourcesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    entry, source = await CatalogReads(resources, shop_id).product(product_id)
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
@route_policy(cached=summary_hit)
async def catalog_summary(
    shop_id: uuid.UUID, resources: ResourcesDep, if_none_match: IfNoneMatch = None
) -> Response:
    entry, source = await CatalogReads(resources, shop_id).summary()
    return cached_response(entry, source, if_none_match)


@router.post(
    "/shops/{shop_id}/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    responses=PROBLEM_RESPONSES,
)
async def create_product(
    body: ProductIn, editor: CatalogEditor, session: SessionDep, resources: ResourcesDep
) -> Response:
    shop_id = editor.shop_id
    product = await CatalogService(session, shop_id, resources.cache).create(body)
    payload, tag = _representation(product)
    return Response(
        payload,
        status_code=status.HTTP_201_CREATED,
        media_type="application/json",
        headers={"ETag": tag, "Location": f"{API_PREFIX}/shops/{shop_id}/products/{product.id}"},
    )


@router.patch(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductOut,
    responses=PROBLEM_RESPONSES,
)
async def update_product(
    product_id: uuid.UUID,
    body: ProductPatch,
    editor: CatalogEditor,
    session: SessionDep,
    resources: ResourcesDep,
    if_match: Annotated[str | None, Header(max_length=MAX_CONDITION_LENGTH), STORABLE] = None,
) -> Response:
    catalog = CatalogService(session, editor.shop_id, resources.cache)
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
    product_id: uuid.UUID, editor: CatalogEditor, session: SessionDep, resources: ResourcesDep
) -> None:
    await CatalogService(session, editor.shop_id, resources.cache).archive(product_id)


@router.post("/shops/{shop_id}/products/bulk", response_model=BulkOut, responses=PROBLEM_RESPONSES)
@route_policy(rate="expensive", body="bulk")
async def bulk_upsert(
    body: BulkIn, editor: CatalogEditor, session: SessionDep, resources: ResourcesDep
) -> BulkOut:
    catalog = CatalogService(session, editor.shop_id, resources.cache)
    created, updated = await catalog.upsert_many(body.items)
    return BulkOut(created=created, updated=updated)
