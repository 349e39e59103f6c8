"""Products in API v2 (HAL, decision 0142): the catalog's service and authorization, as v1.

A product's links depend on who asks: the shop's staff see ``edit`` (PATCH, If-Match) and
``sf:archive``. Reads are public; a token, when sent, is checked as everywhere.

A product's ``ETag`` names its state in the negotiated media type and the copy (its staff's,
with their actions, or anyone else's): ``If-None-Match`` on ``GET`` gives 304 as on v1, and
``If-Match`` on ``PATCH`` accepts the tag of any of v2's media types and either copy, so a
client that read MessagePack can edit too."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import BaseModel, Field

from storefront.catalog.auth import CatalogEditor
from storefront.catalog.reads import CatalogReads
from storefront.catalog.schemas import (
    MAX_CATEGORY_LENGTH,
    MAX_SEARCH_LENGTH,
    BulkIn,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from storefront.catalog.service import CatalogService
from storefront.identity.deps import OptionalPrincipal
from storefront.kit import etag
from storefront.kit.errors import PreconditionFailed
from storefront.kit.inputs import STORABLE
from storefront.kit.money import money
from storefront.shops.service import ShopService
from storefront.web.cached import MAX_CONDITION_LENGTH
from storefront.web.deps import ReadSessionDep, ResourcesDep, SessionDep
from storefront.web.hal import (
    ARCHIVE,
    BULK,
    CURIES,
    EDIT,
    OFFERS,
    PRODUCTS,
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
    op_link,
    page,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.responses import NO_STORE
from storefront.web.route_policy import route_policy

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
        links[EDIT] = link(v2(path), title="change (PATCH, If-Match: the ETag)")
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


def product_tags(product: Any, *, staff: bool) -> dict[str, str]:
    """The product's ``ETag`` in each of v2's media types, as its staff or anyone else sees it:
    the two copies differ by their links, so they never share a tag (a 304 to one for the
    other's tag would leave a staff member's cached copy without its actions)."""
    state = ProductOut.model_validate(product).model_dump_json().encode()
    view = b"staff" if staff else b"public"
    return {media: etag.strong_etag(state + media.encode() + view) for media in OFFERS}


def any_product_tag(product: Any) -> list[str]:
    """Every tag the product's current state has (any media type, either copy)."""
    return [tag for staff in (True, False) for tag in product_tags(product, staff=staff).values()]


SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
PRODUCT_ID = "0190a1b2-c3d4-7e5f-8a9b-0000000000a1"
PRODUCT_URL = f"/api/v2/shops/{SHOP_ID}/products/{PRODUCT_ID}"
PRODUCT_EXAMPLE = {
    "_links": {
        "self": {"href": PRODUCT_URL},
        "collection": {"href": f"/api/v2/shops/{SHOP_ID}/products"},
        "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
        "edit": {"href": PRODUCT_URL, "title": "change (PATCH, If-Match: the ETag)"},
        "sf:archive": {"href": PRODUCT_URL, "title": "archive (DELETE)"},
        "curies": CURIES,
    },
    "id": PRODUCT_ID,
    "shop_id": SHOP_ID,
    "sku": "MUG-1",
    "name": "Mug",
    "description": "A mug.",
    "price": {"amount": "12.50", "currency": "EUR"},
    "stock": 10,
    "category": "kitchen",
    "status": "active",
    "version": 1,
    "created_at": "2026-12-07T05:15:05.123456Z",
    "updated_at": "2026-12-07T05:15:05.123456Z",
}


PRODUCT_PARAMETERS = {
    "path__shop_id": "$response.body#/shop_id",
    "path__product_id": "$response.body#/id",
}


def _personal(staff: bool) -> dict[str, str]:
    # the links differ for staff: never shared from a cache; the public copy varies by the
    # token too, so a cache holding it does not answer a staff member with it
    if staff:
        return {"Cache-Control": NO_STORE, "Vary": "Accept, Authorization"}
    return {"Vary": "Accept, Authorization"}


@router.get(
    "/shops/{shop_id}/products",
    response_model=ProductPageV2,
    response_class=HALResponse,
    responses=problems(
        401,
        404,
        422,
        example={
            "_links": {
                "self": {"href": f"/api/v2/shops/{SHOP_ID}/products?limit=1"},
                "first": {"href": f"/api/v2/shops/{SHOP_ID}/products?limit=1"},
                "next": {"href": f"/api/v2/shops/{SHOP_ID}/products?limit=1&cursor=eyJpZCI6Ij"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "curies": CURIES,
            },
            "count": 1,
            "_embedded": {"products": [PRODUCT_EXAMPLE]},
        },
    ),
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
        {
            SHOP: link(v2(f"/shops/{shop_id}")),
            **({BULK: link(v2(f"/shops/{shop_id}/products/bulk"))} if staff else {}),
        },
    )
    return hal_response(body, media_type, headers=_personal(staff))


@router.get(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductV2,
    response_class=HALResponse,
    responses={
        **problems(401, 404, 422, example=PRODUCT_EXAMPLE),
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
    },
    summary="A product (ETag, If-None-Match); its staff also see the edit and archive actions",
)
async def get_product(
    shop_id: uuid.UUID,
    product_id: uuid.UUID,
    principal: OptionalPrincipal,
    session: ReadSessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
    if_none_match: Annotated[str | None, Header(max_length=MAX_CONDITION_LENGTH), STORABLE] = None,
) -> Response:
    product = await CatalogService(session, shop_id, resources.cache).get(product_id)
    staff = await ShopService(session).is_staff(shop_id, principal)
    headers = {"ETag": product_tags(product, staff=staff)[media_type], **_personal(staff)}
    if etag.none_match(if_none_match, headers["ETag"]):  # revalidation, as v1's read
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return hal_response(product_resource(product, staff=staff), media_type, headers=headers)


@router.post(
    "/shops/{shop_id}/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductV2,
    response_class=HALResponse,
    responses=problems(
        401,
        403,
        404,
        409,
        422,
        ok=201,
        example=PRODUCT_EXAMPLE,
        links={
            "self": op_link(
                "get_product_api_v2_shops__shop_id__products__product_id__get",
                "self",
                **PRODUCT_PARAMETERS,
            ),
            "edit": op_link(
                "update_product_api_v2_shops__shop_id__products__product_id__patch",
                "edit (PATCH)",
                **PRODUCT_PARAMETERS,
            ),
            "archive": op_link(
                "archive_product_api_v2_shops__shop_id__products__product_id__delete",
                "sf:archive (DELETE)",
                **PRODUCT_PARAMETERS,
            ),
            "order": op_link(
                "create_order_api_v2_shops__shop_id__orders_post",
                "the shop's sf:orders (POST): order this product",
                {
                    "lines": [{"product_id": "$response.body#/id", "quantity": 1}],
                    "shipping_address": {
                        "name": "Ada Lovelace",
                        "line1": "12 St James's Square",
                        "city": "London",
                        "postal_code": "SW1Y 4JH",
                        "country": "GB",
                    },
                },
                path__shop_id="$response.body#/shop_id",
                header__Idempotency_Key="$response.body#/id",
            ),
        },
    ),
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
            "ETag": product_tags(product, staff=True)[media_type],
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


@router.patch(
    "/shops/{shop_id}/products/{product_id}",
    response_model=ProductV2,
    response_class=HALResponse,
    responses=problems(401, 403, 404, 409, 412, 422, example=PRODUCT_EXAMPLE),
    summary="Change a product (the shop's staff; the target of `edit`); a stale If-Match is 412",
)
async def update_product(
    product_id: uuid.UUID,
    body: ProductPatch,
    editor: CatalogEditor,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
    if_match: Annotated[str | None, Header(max_length=MAX_CONDITION_LENGTH), STORABLE] = None,
) -> Response:
    catalog = CatalogService(session, editor.shop_id, resources.cache)
    current = await catalog.get(product_id)
    if not any(etag.match(if_match, tag) for tag in any_product_tag(current)):
        raise PreconditionFailed("If-Match does not match the product's current ETag.")
    updated = await catalog.update(current, body.changes(), expected_version=current.version)
    return hal_response(
        product_resource(updated, staff=True),
        media_type,
        headers={"ETag": product_tags(updated, staff=True)[media_type], **_personal(True)},
    )


class BulkV2(HalOut):
    created: int
    updated: int


@router.post(
    "/shops/{shop_id}/products/bulk",
    response_model=BulkV2,
    response_class=HALResponse,
    responses=problems(
        401,
        403,
        404,
        413,
        example={
            "_links": {
                "sf:products": {"href": f"/api/v2/shops/{SHOP_ID}/products"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "curies": CURIES,
            },
            "created": 2,
            "updated": 1,
        },
    ),
    summary="Create or update up to 1000 products by sku (staff; the target of `sf:bulk`)",
)
@route_policy(rate="expensive", body="bulk")
async def bulk_upsert(
    body: BulkIn,
    editor: CatalogEditor,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> Response:
    catalog = CatalogService(session, editor.shop_id, resources.cache)
    created, updated = await catalog.upsert_many(body.items)
    shop = f"/shops/{editor.shop_id}"
    document = resource(
        {PRODUCTS: link(v2(f"{shop}/products")), SHOP: link(v2(shop))},
        {"created": created, "updated": updated},
    )
    return hal_response(document, media_type, headers={"Cache-Control": NO_STORE})


class CategorySummaryV2(BaseModel):
    category: str
    currency: str
    products: int
    in_stock: int
    units_in_stock: int
    min_price: MoneyOut
    max_price: MoneyOut


class CatalogSummaryV2(HalOut):
    shop_id: str
    products: int = Field(description="active products in the shop")
    categories: list[CategorySummaryV2]


@router.get(
    "/shops/{shop_id}/catalog/summary",
    response_model=CatalogSummaryV2,
    response_class=HALResponse,
    responses=problems(
        404,
        example={
            "_links": {
                "self": {"href": f"/api/v2/shops/{SHOP_ID}/catalog/summary"},
                "sf:shop": {"href": f"/api/v2/shops/{SHOP_ID}"},
                "sf:products": {"href": f"/api/v2/shops/{SHOP_ID}/products"},
                "curies": CURIES,
            },
            "shop_id": SHOP_ID,
            "products": 3,
            "categories": [
                {
                    "category": "kitchen",
                    "currency": "EUR",
                    "products": 3,
                    "in_stock": 2,
                    "units_in_stock": 25,
                    "min_price": {"amount": "4.99", "currency": "EUR"},
                    "max_price": {"amount": "12.50", "currency": "EUR"},
                }
            ],
        },
    ),
    summary="Counts and price range per category of the shop's active catalog (cached)",
)
async def catalog_summary(
    shop_id: uuid.UUID, resources: ResourcesDep, media_type: Accepted
) -> Response:
    entry, _source = await CatalogReads(resources, shop_id).summary()
    summary = orjson.loads(entry.body)  # v1's document, from the query-result cache
    shop = f"/shops/{shop_id}"
    document = resource(
        {
            "self": link(v2(f"{shop}/catalog/summary")),
            SHOP: link(v2(shop)),
            PRODUCTS: link(v2(f"{shop}/products")),
        },
        {
            "shop_id": summary["shop_id"],
            "products": summary["products"],
            "categories": [
                {
                    "category": c["category"],
                    "currency": c["currency"],
                    "products": c["products"],
                    "in_stock": c["in_stock"],
                    "units_in_stock": c["units_in_stock"],
                    "min_price": money(c["min_price_cents"], c["currency"]),
                    "max_price": money(c["max_price_cents"], c["currency"]),
                }
                for c in summary["categories"]
            ],
        },
    )
    return hal_response(document, media_type)
