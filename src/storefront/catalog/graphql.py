"""The catalog in the GraphQL schema: products (a Relay connection, served from the same
response cache as REST's listing and invalidated by the same writes), product create,
update (optimistic concurrency on ``version``) and archive, and the product-by-id loader
order lines resolve through."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import orjson
import strawberry

from storefront.catalog.reads import CatalogReads
from storefront.catalog.schemas import (
    BulkIn,
    CatalogSummaryOut,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from storefront.catalog.service import CatalogService
from storefront.kit.errors import PreconditionFailed
from storefront.shops.service import ShopService
from storefront.web.graphql import (
    Connection,
    GraphQLContext,
    LoaderKey,
    MoneyValue,
    connection,
    page_request,
)

# (shop id, product id) -> the shop's active product, or None
PRODUCT = LoaderKey[tuple[uuid.UUID, uuid.UUID], ProductOut | None]("product")
# shop id -> the shop, as shops' GraphQL type (a sibling domain: storefront.graphql pairs
# the key with shops' batch)
SHOP_OF_PRODUCT = LoaderKey[uuid.UUID, Any]("shop-of-product")


def products_by_id(
    context: GraphQLContext,
) -> Callable[[list[tuple[uuid.UUID, uuid.UUID]]], Awaitable[Sequence[Any]]]:
    async def load(keys: list[tuple[uuid.UUID, uuid.UUID]]) -> list[ProductOut | None]:
        by_shop: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for shop_id, product_id in keys:
            by_shop[shop_id].append(product_id)
        found: dict[tuple[uuid.UUID, uuid.UUID], ProductOut] = {}
        async with context.reading() as session:
            for shop_id, ids in by_shop.items():  # one statement per shop in the batch
                rows = await CatalogService(session, shop_id, context.resources.cache).get_many(ids)
                for product_id, row in rows.items():
                    found[shop_id, product_id] = ProductOut.model_validate(row)
        return [found.get(key) for key in keys]

    return load


@strawberry.enum(description="Only active products are listed and sold.")
class ProductStatus(Enum):
    ACTIVE = "active"
    ARCHIVED = "archived"


@strawberry.type(description="A product of a shop's catalog.")
class Product:
    id: strawberry.ID = strawberry.field(description="The product's id.")
    shop_id: strawberry.ID = strawberry.field(description="The shop it belongs to.")
    sku: str = strawberry.field(description="Unique within the shop.")
    name: str = strawberry.field(description="Its name.")
    description: str = strawberry.field(description="Its description (may be empty).")
    price: MoneyValue = strawberry.field(description="The price of one unit.")
    stock: int = strawberry.field(description="Units available to order.")
    category: str = strawberry.field(description="Its category.")
    status: ProductStatus = strawberry.field(description="Active or archived.")
    version: int = strawberry.field(
        description="Increments on every change; pass it to updateProduct."
    )
    created_at: datetime = strawberry.field(description="When it was added.")
    updated_at: datetime = strawberry.field(description="When it last changed.")

    @strawberry.field(description="The shop the product belongs to.")
    async def shop(
        self, info: strawberry.Info[GraphQLContext, None]
    ) -> Annotated[Shop, strawberry.lazy("storefront.shops.graphql")]:  # type: ignore[name-defined]  # noqa: F821
        return await info.context.loader(SHOP_OF_PRODUCT).load(uuid.UUID(self.shop_id))

    @classmethod
    def of(cls, out: ProductOut) -> Product:
        return cls(
            id=strawberry.ID(str(out.id)),
            shop_id=strawberry.ID(str(out.shop_id)),
            sku=out.sku,
            name=out.name,
            description=out.description,
            price=MoneyValue(out.price_cents, out.currency),
            stock=out.stock,
            category=out.category,
            status=ProductStatus(out.status.value),
            version=out.version,
            created_at=out.created_at,
            updated_at=out.updated_at,
        )


@strawberry.input(description="A new product.")
class ProductInput:
    sku: str = strawberry.field(description="Unique within the shop: letters, digits, - and _.")
    name: str = strawberry.field(description="Its name.")
    description: str = strawberry.field(default="", description="Its description (default empty).")
    price: MoneyValue = strawberry.field(description="The price of one unit.")
    stock: int = strawberry.field(description="Units available to order.")
    category: str = strawberry.field(description="Its category.")


@strawberry.input(description="The fields to change; those left out keep their value.")
class ProductPatchInput:
    name: str | None = strawberry.field(default=strawberry.UNSET, description="A new name.")
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new description."
    )
    price: MoneyValue | None = strawberry.field(
        default=strawberry.UNSET, description="A new price."
    )
    stock: int | None = strawberry.field(default=strawberry.UNSET, description="A new stock level.")
    category: str | None = strawberry.field(default=strawberry.UNSET, description="A new category.")


def _money_fields(price: Any) -> dict[str, Any]:
    money: MoneyValue = price
    return {"price_cents": money.cents, "currency": money.currency}


def _patch(data: ProductPatchInput) -> ProductPatch:
    fields: dict[str, Any] = {}
    for name in ("name", "description", "stock", "category"):
        value = getattr(data, name)
        if value is not strawberry.UNSET:
            fields[name] = value
    if data.price is not strawberry.UNSET:
        fields.update(
            _money_fields(data.price) if data.price is not None else {"price_cents": None}
        )
    return ProductPatch.model_validate(fields)


@strawberry.type(description="The active products of one category in one currency.")
class CategorySummary:
    category: str = strawberry.field(description="The category.")
    currency: str = strawberry.field(description="The currency of these prices (ISO 4217).")
    products: int = strawberry.field(description="Active products in this category and currency.")
    in_stock: int = strawberry.field(description="Of which have stock left.")
    units_in_stock: int = strawberry.field(description="Units left across them.")
    min_price: MoneyValue = strawberry.field(description="The lowest price among them.")
    max_price: MoneyValue = strawberry.field(description="The highest price among them.")


@strawberry.type(description="A shop's catalog in figures (as GET /shops/{id}/catalog/summary).")
class CatalogSummary:
    shop_id: strawberry.ID = strawberry.field(description="The shop.")
    products: int = strawberry.field(description="Active products in the shop.")
    categories: list[CategorySummary] = strawberry.field(
        description="By category and currency, in category order."
    )

    @classmethod
    def of(cls, out: CatalogSummaryOut) -> CatalogSummary:
        return cls(
            shop_id=strawberry.ID(str(out.shop_id)),
            products=out.products,
            categories=[
                CategorySummary(
                    category=c.category,
                    currency=c.currency,
                    products=c.products,
                    in_stock=c.in_stock,
                    units_in_stock=c.units_in_stock,
                    min_price=MoneyValue(c.min_price_cents, c.currency),
                    max_price=MoneyValue(c.max_price_cents, c.currency),
                )
                for c in out.categories
            ],
        )


@strawberry.type(description="What a bulk upsert did.")
class BulkUpsertResult:
    created: int = strawberry.field(description="Products added (a sku the shop did not have).")
    updated: int = strawberry.field(description="Products changed (a sku the shop had).")


@strawberry.type
class CatalogQuery:
    @strawberry.field(
        description="A page of the shop's active products in id order (public; cached and "
        "invalidated exactly as GET /shops/{id}/products)."
    )
    async def products(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        first: Annotated[int | None, strawberry.argument(description="1..100, default 20")] = None,
        after: str | None = None,
        q: Annotated[str | None, strawberry.argument(description="In the name.")] = None,
        category: str | None = None,
    ) -> Connection[Product]:
        page = page_request(first, after)
        entry, _source = await CatalogReads(info.context.resources, shop_id).listing(
            limit=page.limit, after=page.after, q=q or None, category=category
        )
        body = orjson.loads(entry.body)
        items = [ProductOut.model_validate(item) for item in body["items"]]
        return connection(
            [Product.of(item) for item in items],
            [item.id for item in items],
            has_next_page=body["next_cursor"] is not None,
        )

    @strawberry.field(description="One active product of a shop (public).")
    async def product(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, id: uuid.UUID
    ) -> Product | None:
        entry, _source = await CatalogReads(info.context.resources, shop_id).product(id)
        return Product.of(ProductOut.model_validate_json(entry.body))

    @strawberry.field(
        description="The shop's catalog in figures (public; the same cached answer as GET "
        "/shops/{id}/catalog/summary, invalidated by the same writes)."
    )
    async def catalog_summary(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID
    ) -> CatalogSummary:
        entry, _source = await CatalogReads(info.context.resources, shop_id).summary()
        return CatalogSummary.of(CatalogSummaryOut.model_validate_json(entry.body))


async def _staff_catalog(
    info: strawberry.Info[GraphQLContext, None], session: Any, shop_id: uuid.UUID
) -> CatalogService:
    """The catalog of a shop the caller is staff of (as REST's CatalogEditor)."""
    context = info.context
    await ShopService(session).require_staff(shop_id, context.require_principal())
    return CatalogService(session, shop_id, context.resources.cache)


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(description="Add a product (the shop's owners and staff).")
    async def create_product(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, input: ProductInput
    ) -> Product:
        data = ProductIn.model_validate(
            {
                "sku": input.sku,
                "name": input.name,
                "description": input.description,
                "stock": input.stock,
                "category": input.category,
                **_money_fields(input.price),
            }
        )
        async with info.context.writing() as session:
            catalog = await _staff_catalog(info, session, shop_id)
            product = await catalog.create(data)
            out = ProductOut.model_validate(product)
        return Product.of(out)

    @strawberry.mutation(
        description="Change a product, if its version is still `version` (else an error with "
        "code precondition-failed: read it again and retry)."
    )
    async def update_product(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        id: uuid.UUID,
        version: int,
        input: ProductPatchInput,
    ) -> Product:
        patch = _patch(input)
        async with info.context.writing() as session:
            catalog = await _staff_catalog(info, session, shop_id)
            current = await catalog.get(id)
            if current.version != version:
                raise PreconditionFailed(
                    "The product changed since you read it; fetch it again and retry.",
                    extra={"current_version": current.version},
                )
            updated = await catalog.update(current, patch.changes(), expected_version=version)
            out = ProductOut.model_validate(updated)
        return Product.of(out)

    @strawberry.mutation(description="Archive a product: no longer listed nor sold.")
    async def archive_product(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID, id: uuid.UUID
    ) -> bool:
        async with info.context.writing() as session:
            catalog = await _staff_catalog(info, session, shop_id)
            await catalog.archive(id)
        return True


def _product_in(item: ProductInput) -> dict[str, Any]:
    return {
        "sku": item.sku,
        "name": item.name,
        "description": item.description,
        "stock": item.stock,
        "category": item.category,
        **_money_fields(item.price),
    }


@strawberry.type
class CatalogBulkMutation:
    @strawberry.mutation(
        description="Create or update up to 1000 products by sku in one transaction (the "
        "shop's owners and staff; as POST /shops/{id}/products/bulk, from the same "
        "`expensive` rate-limit budget). For batches larger than the GraphQL body limit, "
        "use REST."
    )
    async def bulk_upsert_products(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        items: list[ProductInput],
    ) -> BulkUpsertResult:
        context = info.context
        await context.spend("expensive")  # first, as REST's middleware spends it
        context.require_principal()
        body = BulkIn.model_validate({"items": [_product_in(item) for item in items]})
        async with context.writing() as session:
            catalog = await _staff_catalog(info, session, shop_id)
            created, updated = await catalog.upsert_many(body.items)
        return BulkUpsertResult(created=created, updated=updated)


@strawberry.type(description="A change to one of a shop's products.")
class ProductChange:
    id: strawberry.ID = strawberry.field(description="The product's id.")
    change: str = strawberry.field(description="created, updated, archived or upserted.")
    version: int | None = strawberry.field(
        description="Its version after the change (null once archived)."
    )
    shop_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The product as it is now; null once archived.")
    async def product(self, info: strawberry.Info[GraphQLContext, None]) -> Product | None:
        out = await info.context.loader(PRODUCT).load((self.shop_id, uuid.UUID(self.id)))
        return None if out is None else Product.of(out)


@strawberry.type
class CatalogSubscription:
    @strawberry.subscription(
        description="Each change to the shop's products, from any process (public, as the catalog)."
    )
    async def product_changed(
        self, info: strawberry.Info[GraphQLContext, None], shop_id: uuid.UUID
    ) -> AsyncGenerator[ProductChange, None]:
        context = info.context
        live = context.require_live()
        async with context.reading() as session:
            await ShopService(session).get(shop_id)  # an unknown shop: not-found
        wanted = str(shop_id)
        stream = live.subscribe(
            lambda e: e.type == "product.changed" and e.data.get("shop_id") == wanted
        )
        try:
            async for event in stream:
                context.fresh_loaders()
                yield ProductChange(
                    id=strawberry.ID(str(event.data["id"])),
                    change=str(event.data.get("change")),
                    version=event.data.get("version"),
                    shop_id=shop_id,
                )
        finally:
            await stream.aclose()
