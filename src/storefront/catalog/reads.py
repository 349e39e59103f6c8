"""The catalog's public reads, served from the response cache.

Each read computes its representation in a short session of its own (so a cache hit opens
no session at all), serializes it once, and files the bytes under the tags that writes
invalidate (see ``CatalogService._changed``). The summary is the query-result cache: one
aggregate over the shop's catalog, kept until a write to that catalog.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping

import orjson
from sqlalchemy import bindparam, select
from starlette.requests import Request
from starlette.types import Scope

from storefront.cache import Entry, make_entry
from storefront.catalog.models import Product, ProductStatus
from storefront.catalog.schemas import MAX_CATEGORY_LENGTH, MAX_SEARCH_LENGTH, ProductOut
from storefront.catalog.service import CatalogService, catalog_tag, product_tag
from storefront.kit.db import ReadSession
from storefront.kit.errors import NotFound
from storefront.resources import Resources
from storefront.shops.service import ShopService, shop_tag
from storefront.web.fast_path import Hit
from storefront.web.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_CURSOR_LENGTH,
    MAX_PAGE_SIZE,
    InvalidCursor,
    Page,
    decode_cursor,
    encode_cursor,
    next_link,
)

_PRODUCTS = Product.__table__
_ACTIVE_PRODUCT = select(_PRODUCTS).where(
    _PRODUCTS.c.id == bindparam("product_id"),
    # typed explicitly: the foreign key's type is NullType until shops' table is known
    _PRODUCTS.c.shop_id == bindparam("shop_id", type_=_PRODUCTS.c.id.type),
    _PRODUCTS.c.status == ProductStatus.active,
)


class CatalogReads:
    def __init__(self, resources: Resources, shop_id: uuid.UUID) -> None:
        self.resources = resources
        self.shop_id = shop_id

    async def _read(self) -> ReadSession:
        """A read session for a shared cache fill: it waits for this process's newest write
        (what invalidated the entry), so a fill never stores what that write replaced."""
        reads = self.resources.reads
        return await reads.session(min_lsn=reads.high_water)

    async def product(self, product_id: uuid.UUID) -> tuple[Entry, str]:
        async def compute() -> Entry:
            # one Core statement on a read session (on PostgreSQL autocommit: no BEGIN or
            # ROLLBACK round trips; no ORM identity map), on the replica when it can serve
            # (decision 0150); the same row, columns and types (decision 0060)
            async with await self._read() as session:
                result = await session.execute(
                    _ACTIVE_PRODUCT, {"product_id": product_id, "shop_id": self.shop_id}
                )
                row = result.mappings().first()
            if row is None:
                raise NotFound("No such product in this shop.")
            return make_entry(ProductOut.model_validate(dict(row)).model_dump_json().encode())

        return await self.resources.cache.get_or_compute(
            "product", *self._product_key(product_id), compute
        )

    def _product_key(self, product_id: uuid.UUID) -> tuple[str, list[str]]:
        return f"product:{self.shop_id}:{product_id}", [product_tag(product_id)]

    async def listing(
        self, *, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> tuple[Entry, str]:
        """One page; ``meta["next_cursor"]`` is set when there is a next page."""

        async def compute() -> Entry:
            async with await self._read() as session:
                await ShopService(session).get(self.shop_id)
                items, last = await CatalogService(
                    session, self.shop_id, self.resources.cache
                ).list_page(limit=limit, after=after, q=q, category=category)
                next_cursor = encode_cursor(last) if last else None
                page = Page[ProductOut](
                    items=[ProductOut.model_validate(p) for p in items], next_cursor=next_cursor
                )
            meta = {"next_cursor": next_cursor} if next_cursor else {}
            return make_entry(page.model_dump_json().encode(), meta)

        return await self.resources.cache.get_or_compute(
            "listing", *self._listing_key(limit, after, q, category), compute
        )

    def _listing_key(
        self, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> tuple[str, list[str]]:
        params = orjson.dumps([limit, after.hex if after else None, q, category])
        digest = hashlib.blake2b(params, digest_size=16).hexdigest()
        return f"products:{self.shop_id}:{digest}", [
            catalog_tag(self.shop_id),
            shop_tag(self.shop_id),
        ]

    async def summary(self) -> tuple[Entry, str]:
        async def compute() -> Entry:
            async with await self._read() as session:
                await ShopService(session).get(self.shop_id)
                summary = await CatalogService(
                    session, self.shop_id, self.resources.cache
                ).summary()
            return make_entry(summary.model_dump_json().encode())

        return await self.resources.cache.get_or_compute("summary", *self._summary_key(), compute)

    def _summary_key(self) -> tuple[str, list[str]]:
        return f"summary:{self.shop_id}", [catalog_tag(self.shop_id), shop_tag(self.shop_id)]

    # --- the cache-hit fast path (web/fast_path.py): L1 only, never computes ---
    async def product_hit(self, product_id: uuid.UUID) -> Entry | None:
        return await self.resources.cache.peek("product", *self._product_key(product_id))

    async def summary_hit(self) -> Entry | None:
        return await self.resources.cache.peek("summary", *self._summary_key())

    async def listing_hit(
        self, limit: int, after: uuid.UUID | None, q: str | None, category: str | None
    ) -> Entry | None:
        return await self.resources.cache.peek(
            "listing", *self._listing_key(limit, after, q, category)
        )


def _canonical_uuid(text: str | None) -> uuid.UUID | None:
    """The id if ``text`` is one in canonical form; anything else goes to the route, whose
    validation decides (and may refuse it with a 422)."""
    if text is None or len(text) != 36:
        return None
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value if str(value) == text.lower() else None


NO_HEADERS: dict[str, str] = {}


async def product_hit(resources: Resources, params: Mapping[str, str], _scope: Scope) -> Hit | None:
    shop_id = _canonical_uuid(params.get("shop_id"))
    product_id = _canonical_uuid(params.get("product_id"))
    if shop_id is None or product_id is None:
        return None
    entry = await CatalogReads(resources, shop_id).product_hit(product_id)
    return None if entry is None else (entry, NO_HEADERS)


async def summary_hit(resources: Resources, params: Mapping[str, str], _scope: Scope) -> Hit | None:
    shop_id = _canonical_uuid(params.get("shop_id"))
    if shop_id is None:
        return None
    entry = await CatalogReads(resources, shop_id).summary_hit()
    return None if entry is None else (entry, NO_HEADERS)


def _text(value: str | None, max_length: int) -> bool:
    return value is None or 1 <= len(value) <= max_length


async def listing_hit(resources: Resources, params: Mapping[str, str], scope: Scope) -> Hit | None:
    """The listing's parameters as ``list_products`` validates them; anything it might
    read differently (a limit not written as a plain number, a bad cursor) goes to it."""
    shop_id = _canonical_uuid(params.get("shop_id"))
    raw_limit, cursor = params.get("limit"), params.get("cursor")
    q, category = params.get("q"), params.get("category")
    if shop_id is None or not (
        _text(q, MAX_SEARCH_LENGTH)
        and _text(category, MAX_CATEGORY_LENGTH)
        and _text(cursor, MAX_CURSOR_LENGTH)
    ):
        return None
    limit = DEFAULT_PAGE_SIZE
    if raw_limit is not None:
        if not raw_limit.isdigit() or str(int(raw_limit)) != raw_limit:
            return None
        limit = int(raw_limit)
        if not 1 <= limit <= MAX_PAGE_SIZE:
            return None
    try:
        after = decode_cursor(cursor)
    except InvalidCursor:
        return None
    entry = await CatalogReads(resources, shop_id).listing_hit(limit, after, q, category)
    if entry is None:
        return None
    if next_cursor := entry.meta.get("next_cursor"):
        return entry, {"Link": next_link(Request(scope), next_cursor)}
    return entry, NO_HEADERS
