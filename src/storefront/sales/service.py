"""Reading the sales projection (the consumer in projection.py writes it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auth.principal import Principal
from storefront.kit.errors import NotFound, UnprocessableEntity
from storefront.sales.models import SalesDay
from storefront.shops.service import ShopService

MAX_RANGE_DAYS = 366


class InvalidRange(UnprocessableEntity):
    slug = "invalid-date-range"
    title = "Invalid date range"


class SalesService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def require_reader(self, shop_id: uuid.UUID, principal: Principal) -> None:
        """Owners and staff (and platform admins) read a shop's sales; anyone else is told
        the shop does not exist, as for any shop the caller may not see into."""
        try:
            allowed = await ShopService(self.session).is_staff(shop_id, principal)
        except NotFound:
            allowed = False
        if not allowed:
            raise NotFound("No such shop.")

    async def days(self, shop_id: uuid.UUID, start: date, end: date) -> Sequence[SalesDay]:
        """The projection's rows of ``start`` to ``end`` (inclusive), by day and currency."""
        if end < start:
            raise InvalidRange("`from` must not be after `to`.")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise InvalidRange(f"At most {MAX_RANGE_DAYS} days per request.")
        rows = await self.session.scalars(
            select(SalesDay)
            .where(SalesDay.shop_id == shop_id, SalesDay.day >= start, SalesDay.day <= end)
            .order_by(SalesDay.day, SalesDay.currency)
        )
        return rows.all()
