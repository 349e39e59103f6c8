from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.webhooks.models import WebhookEndpoint


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        self.session.add(endpoint)
        await self.session.flush()
        return endpoint

    async def count(self, shop_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(WebhookEndpoint.shop_id == shop_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def all_of(self, shop_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
        stmt = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.shop_id == shop_id)
            .order_by(WebhookEndpoint.id)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def get(self, shop_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.shop_id == shop_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_id(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        """By id alone: the delivery job's arguments do not name the shop (a job, not a
        tenant request: docs/scaling.md, "fan out"). ``session.get`` takes (shop_id, id)."""
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def subscribers(self, shop_id: uuid.UUID) -> Sequence[tuple[uuid.UUID, list[str]]]:
        """(id, events) of the shop's active endpoints: one small query per published event."""
        stmt = select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.shop_id == shop_id, WebhookEndpoint.is_active.is_(True)
        )
        return [(row.id, list(row.events)) for row in await self.session.execute(stmt)]

    async def delete(self, endpoint: WebhookEndpoint) -> None:
        # by shop and id (the ORM's delete names the id alone: decision 0170)
        await self.session.execute(
            delete(WebhookEndpoint).where(
                WebhookEndpoint.shop_id == endpoint.shop_id, WebhookEndpoint.id == endpoint.id
            )
        )
        self.session.expunge(endpoint)

    async def disable(self, endpoint_id: uuid.UUID, reason: str) -> None:
        stmt = (
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(is_active=False, disabled_reason=reason)
        )
        await self.session.execute(stmt)
