"""The catalog's public reads, served from the response cache.

Each read computes its representation in a short session of its own (so a cache hit opens
no session at all), serializes it once, and files the bytes under the tags that writes
invalidate (see ``CatalogService._changed``). The summary is the query-result cache: one
aggregate over the shop's catalog, kept until a write to that catalog.
"""

from __future__ import annotations

import hashlib
import uuid

import orjson

from storefront.catalog.schemas import ProductOut
from storefront.catalog.service import CatalogService, catalog_tag, product_tag
from storefront.platform.cache import Entry, make_entry
from storefront.platform.http.pagination import Page, encode_cursor
from storefront.platform.runtime import Runtime
from storefront.shops.service import ShopService, shop_tag


class CatalogReads:
    def __init__(self, runtime: Runtime, shop_id: uuid.UUID) -> None:
        self.runtime = runtime
        self.shop_id = shop_id

    async def product(self, product_id: uuid.UUID) -> tuple[Entry, str]:
        async def compute() -> Entry:
            async with self.runtime.sessionmaker() as session:
                product = await CatalogService(session, self.shop_id).get(product_id)
                return make_entry(ProductOut.model_validate(product).model_dump_json().encode())

        return await self.runtime.cache.get_or_compute(
            "product",
            f"product:{self.shop_id}:{product_id}",
            [product_tag(product_id)],
            compute,
        )

    async def listing(
        self, *, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> tuple[Entry, str]:
        """One page; ``meta["next_cursor"]`` is set when there is a next page."""

        async def compute() -> Entry:
            async with self.runtime.sessionmaker() as session:
                await ShopService(session).get(self.shop_id)
                items, last = await CatalogService(session, self.shop_id).list_page(
                    limit=limit, after=after, q=q, category=category
                )
                next_cursor = encode_cursor(last) if last else None
                page = Page[ProductOut](
                    items=[ProductOut.model_validate(p) for p in items], next_cursor=next_cursor
                )
            meta = {"next_cursor": next_cursor} if next_cursor else {}
            return make_entry(page.model_dump_json().encode(), meta)

        params = orjson.dumps([limit, after.hex if after else None, q, category])
        digest = hashlib.blake2b(params, digest_size=16).hexdigest()
        return await self.runtime.cache.get_or_compute(
            "listing",
            f"products:{self.shop_id}:{digest}",
            [catalog_tag(self.shop_id), shop_tag(self.shop_id)],
            compute,
        )

    async def summary(self) -> tuple[Entry, str]:
        async def compute() -> Entry:
            async with self.runtime.sessionmaker() as session:
                await ShopService(session).get(self.shop_id)
                summary = await CatalogService(session, self.shop_id).summary()
            return make_entry(summary.model_dump_json().encode())

        return await self.runtime.cache.get_or_compute(
            "summary",
            f"summary:{self.shop_id}",
            [catalog_tag(self.shop_id), shop_tag(self.shop_id)],
            compute,
        )
