"""Catalog rules. Orders reserve and return stock through this service, never its tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import record
from storefront.cache import ResponseCache, invalidate_after_commit
from storefront.catalog.models import Product
from storefront.catalog.repository import ProductRepository
from storefront.catalog.schemas import CatalogSummaryOut, CategorySummary, ProductIn
from storefront.events import EventType
from storefront.events import record as record_event
from storefront.kit.errors import (
    Conflict,
    InsufficientStock,
    NotFound,
    PreconditionFailed,
    UnprocessableEntity,
)

UPSERT_BATCH = 1000


def product_tag(product_id: uuid.UUID) -> str:
    """Cache tag of one product's representation."""
    return f"product:{product_id}"


def catalog_tag(shop_id: uuid.UUID) -> str:
    """Cache tag of everything derived from a shop's whole catalog (listings, summary)."""
    return f"catalog:{shop_id}"


class UnknownProduct(UnprocessableEntity):
    slug = "unknown-product"
    title = "Unknown product"


@dataclass(frozen=True, slots=True)
class ReservedItem:
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price_cents: int
    currency: str
    quantity: int
    stock_left: int  # the product's stock once this reservation took its units


class CatalogService:
    def __init__(
        self, session: AsyncSession, shop_id: uuid.UUID, cache: ResponseCache | None
    ) -> None:
        """``cache``: the process's response cache, invalidated once a write commits (None:
        nothing to invalidate)."""
        self.session = session
        self.shop_id = shop_id
        self.cache = cache
        self.products = ProductRepository(session, shop_id)

    def _changed(self, product_ids: Iterable[uuid.UUID]) -> None:
        """Cached representations of these products and of the shop's catalog go stale
        once this transaction commits (stock included: it is part of the product)."""
        tags = [catalog_tag(self.shop_id), *(product_tag(p) for p in product_ids)]
        invalidate_after_commit(self.session, self.cache, tags)

    def _event(self, product_id: uuid.UUID, change: str, version: int | None = None) -> None:
        """``product.changed`` in this transaction (decision 0140): which product, how."""
        record_event(
            self.session,
            EventType.product_changed,
            subject=f"products/{product_id}",
            data={
                "id": str(product_id),
                "shop_id": str(self.shop_id),
                "change": change,
                "version": version,
            },
            shop_id=self.shop_id,
        )

    def _audit(
        self,
        action: str,
        product_id: uuid.UUID,
        details: dict[str, str | int | bool | None] | None = None,
    ) -> None:
        record(
            self.session,
            action,
            object_type="product",
            object_id=product_id,
            shop_id=self.shop_id,
            details=details,
        )

    async def list_page(
        self, *, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> tuple[Sequence[Product], uuid.UUID | None]:
        rows = await self.products.list_active(limit=limit + 1, after=after, q=q, category=category)
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    async def get(self, product_id: uuid.UUID) -> Product:
        product = await self.products.get_active(product_id)
        if product is None:
            raise NotFound("No such product in this shop.")
        return product

    async def get_many(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Product]:
        """The shop's active products among ``product_ids``, by id (one statement)."""
        return {p.id: p for p in await self.products.get_active_many(product_ids)}

    async def create(self, data: ProductIn) -> Product:
        if await self.products.sku_taken(data.sku):
            raise Conflict(f"This shop already has a product with sku {data.sku!r}.")
        product = Product(shop_id=self.shop_id, **data.model_dump())
        try:
            async with self.session.begin_nested():
                await self.products.add(product)
        except IntegrityError as exc:
            raise Conflict(f"This shop already has a product with sku {data.sku!r}.") from exc
        self._changed([product.id])
        self._audit("product.created", product.id)
        self._event(product.id, "created", product.version)
        return product

    async def update(
        self, product: Product, changes: dict[str, object], *, expected_version: int
    ) -> Product:
        updated = await self.products.update_if_version(product.id, expected_version, changes)
        if updated is None:
            if await self.products.exists_active(product.id):
                raise PreconditionFailed(
                    "The product changed since you read it; fetch it again and retry."
                )
            raise NotFound("No such product in this shop.")
        self._changed([product.id])
        self._event(product.id, "updated", updated.version)
        self._audit(
            "product.updated",
            product.id,
            {"version": updated.version, "fields": ",".join(sorted(changes))},
        )
        return updated

    async def archive(self, product_id: uuid.UUID) -> None:
        if not await self.products.archive(product_id):
            raise NotFound("No such product in this shop.")
        self._changed([product_id])
        self._audit("product.archived", product_id)
        self._event(product_id, "archived")

    async def upsert_many(self, items: Sequence[ProductIn]) -> tuple[int, int]:
        created = updated = 0
        for start in range(0, len(items), UPSERT_BATCH):
            batch = [i.model_dump() for i in items[start : start + UPSERT_BATCH]]
            c, u, ids = await self.products.upsert_many(batch)
            created, updated = created + c, updated + u
            self._changed(ids)
            for product_id in ids:
                self._event(product_id, "upserted")
        # one entry for the whole request, with counts (not one per product)
        record(
            self.session,
            "products.bulk_upserted",
            object_type="shop",
            object_id=self.shop_id,
            shop_id=self.shop_id,
            details={"items": len(items), "created": created, "updated": updated},
        )
        return created, updated

    async def reserve(self, lines: Iterable[tuple[uuid.UUID, int]]) -> list[ReservedItem]:
        """Take stock for every line or raise (the caller's transaction rolls all back).

        Rows are locked in id order so two orders over the same products can't deadlock.
        """
        reserved: list[ReservedItem] = []
        for product_id, quantity in sorted(lines):
            row = await self.products.take_stock(product_id, quantity)
            if row is None:
                if not await self.products.exists_active(product_id):
                    raise UnknownProduct(
                        f"Product {product_id} is not for sale in this shop.",
                        extra={"product_id": str(product_id)},
                    )
                raise InsufficientStock(
                    f"Not enough stock for product {product_id}.",
                    extra={"product_id": str(product_id)},
                )
            reserved.append(
                ReservedItem(
                    row.id, row.sku, row.name, row.price_cents, row.currency, quantity, row.stock
                )
            )
        self._changed(item.product_id for item in reserved)
        return reserved

    async def release(self, lines: Iterable[tuple[uuid.UUID, int]]) -> None:
        returned = sorted(lines)
        for product_id, quantity in returned:
            await self.products.return_stock(product_id, quantity)
        self._changed(product_id for product_id, _ in returned)

    async def summary(self) -> CatalogSummaryOut:
        """Counts and price range per category (and currency) of the active catalog."""
        rows = await self.products.summary()
        categories = [
            CategorySummary(
                category=category,
                currency=currency,
                products=int(count),
                in_stock=int(in_stock),
                units_in_stock=int(units),
                min_price_cents=int(low),
                max_price_cents=int(high),
            )
            for category, currency, count, in_stock, units, low, high in rows
        ]
        return CatalogSummaryOut(
            shop_id=self.shop_id,
            products=sum(c.products for c in categories),
            categories=categories,
        )
