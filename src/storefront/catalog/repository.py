"""Catalog queries. Every statement is scoped to one shop in the base query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.catalog.models import Product, ProductStatus
from storefront.kit.db import dialect_insert, new_id, utcnow

UPSERT_FIELDS = ("name", "description", "price_cents", "currency", "stock", "category")

# built once, on the table (not the ORM entity): an order takes stock once per line, and
# building the UPDATE and running it through the ORM's bulk-update path cost more CPU than
# the statement itself (decision 0060, "Order paths")
_products = cast(Table, Product.__table__)
_quantity = bindparam("b_quantity", type_=_products.c.stock.type)
_TAKE_STOCK = (
    update(_products)
    .where(
        # typed like the id, not from the foreign key: built at import, before shops' table
        # may be known, when the foreign key's type is still NullType (no UUID conversion)
        _products.c.shop_id == bindparam("b_shop_id", type_=_products.c.id.type),
        _products.c.id == bindparam("b_id", type_=_products.c.id.type),
        _products.c.status == ProductStatus.active,
        _products.c.stock >= _quantity,
    )
    .values(
        stock=_products.c.stock - _quantity,
        version=_products.c.version + 1,
        updated_at=bindparam("b_now", type_=_products.c.updated_at.type),
    )
    .returning(
        _products.c.id,
        _products.c.sku,
        _products.c.name,
        _products.c.price_cents,
        _products.c.currency,
        _products.c.stock,  # what is left once this line took its units (hold limits)
    )
)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ProductRepository:
    def __init__(self, session: AsyncSession, shop_id: uuid.UUID) -> None:
        self.session = session
        self.shop_id = shop_id

    def _base(self) -> Select[Product]:
        return select(Product).where(Product.shop_id == self.shop_id)

    def _active(self) -> Select[Product]:
        return self._base().where(Product.status == ProductStatus.active)

    async def list_active(
        self, *, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> Sequence[Product]:
        stmt = self._active()
        if category is not None:
            stmt = stmt.where(Product.category == category)
        if q:
            stmt = stmt.where(Product.name.ilike(f"%{_escape_like(q)}%", escape="\\"))
        if after is not None:
            stmt = stmt.where(Product.id > after)
        stmt = stmt.order_by(Product.id).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()

    async def get_active(self, product_id: uuid.UUID) -> Product | None:
        stmt = self._active().where(Product.id == product_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_active_many(self, product_ids: Sequence[uuid.UUID]) -> Sequence[Product]:
        """The shop's active products among ``product_ids`` (one statement, any order)."""
        if not product_ids:
            return []
        stmt = self._active().where(Product.id.in_(product_ids))
        return (await self.session.execute(stmt)).scalars().all()

    async def sku_taken(self, sku: str) -> bool:
        stmt = select(Product.id).where(Product.shop_id == self.shop_id, Product.sku == sku)
        return (await self.session.execute(stmt)).first() is not None

    async def add(self, product: Product) -> Product:
        self.session.add(product)
        await self.session.flush()
        return product

    async def update_if_version(
        self, product_id: uuid.UUID, version: int, values: dict[str, Any]
    ) -> Product | None:
        """Compare-and-set on ``version``: None when the row changed (or is gone)."""
        stmt = (
            update(Product)
            .where(
                Product.shop_id == self.shop_id,
                Product.id == product_id,
                Product.status == ProductStatus.active,
                Product.version == version,
            )
            .values(**values, version=Product.version + 1, updated_at=utcnow())
            .returning(Product)
            # the returned row refreshes the session's object (a refresh would read it again
            # by id alone, without the shop: decision 0170)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def upsert_many(
        self, items: Sequence[dict[str, Any]]
    ) -> tuple[int, int, list[uuid.UUID]]:
        """One INSERT .. ON CONFLICT (shop_id, sku) DO UPDATE for the whole batch.

        A row the statement created comes back with version 1; an updated row with a
        bumped version, so one round trip also tells created from updated (and gives the
        ids of every row written, for cache invalidation).
        """
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "shop_id": self.shop_id,
                "status": ProductStatus.active,
                "version": 1,
                "created_at": now,
                "updated_at": now,
                **item,
            }
            for item in items
        ]
        insert = dialect_insert(self.session)(Product)
        excluded = insert.excluded
        stmt = (
            insert.values(rows)
            .on_conflict_do_update(
                index_elements=[Product.shop_id, Product.sku],
                set_={
                    **{f: getattr(excluded, f) for f in UPSERT_FIELDS},
                    "status": ProductStatus.active,
                    "version": Product.version + 1,
                    "updated_at": now,
                },
            )
            .returning(Product.id, Product.version)
        )
        written = (await self.session.execute(stmt)).all()
        created = sum(1 for row in written if row.version == 1)
        return created, len(written) - created, [row.id for row in written]

    async def take_stock(
        self, product_id: uuid.UUID, quantity: int
    ) -> Row[uuid.UUID, str, str, int, str] | None:
        """Atomically decrement stock if enough is left (the row lock serialises buyers)."""
        params = {
            "b_shop_id": self.shop_id,
            "b_id": product_id,
            "b_quantity": quantity,
            "b_now": utcnow(),
        }
        return (await self.session.execute(_TAKE_STOCK, params)).one_or_none()

    async def exists_active(self, product_id: uuid.UUID) -> bool:
        stmt = select(Product.id).where(
            Product.shop_id == self.shop_id,
            Product.id == product_id,
            Product.status == ProductStatus.active,
        )
        return (await self.session.execute(stmt)).first() is not None

    async def archive(self, product_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            update(Product)
            .where(
                Product.shop_id == self.shop_id,
                Product.id == product_id,
                Product.status == ProductStatus.active,
            )
            .values(status=ProductStatus.archived, version=Product.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def return_stock(self, product_id: uuid.UUID, quantity: int) -> None:
        await self.session.execute(
            update(Product)
            .where(Product.shop_id == self.shop_id, Product.id == product_id)
            .values(
                stock=Product.stock + quantity, version=Product.version + 1, updated_at=utcnow()
            )
            .execution_options(synchronize_session=False)
        )

    async def summary(self) -> list[tuple[Any, ...]]:
        """Per (category, currency) of the active catalog: product count, products in
        stock, units in stock, lowest and highest price. One aggregate over the shop's
        active-products index."""
        in_stock = func.sum(case((Product.stock > 0, 1), else_=0))
        stmt = (
            select(
                Product.category,
                Product.currency,
                func.count(),
                in_stock,
                func.coalesce(func.sum(Product.stock), 0),
                func.min(Product.price_cents),
                func.max(Product.price_cents),
            )
            .where(Product.shop_id == self.shop_id, Product.status == ProductStatus.active)
            .group_by(Product.category, Product.currency)
            .order_by(Product.category, Product.currency)
        )
        result = await self.session.execute(stmt)
        return [tuple(row) for row in result.all()]
