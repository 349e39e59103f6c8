from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.shops.models import Membership, Role, Shop


class ShopRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: uuid.UUID) -> Shop | None:
        return await self.session.get(Shop, shop_id)

    async def by_slug(self, slug: str) -> Shop | None:
        return (
            await self.session.execute(select(Shop).where(Shop.slug == slug))
        ).scalar_one_or_none()

    async def add(self, shop: Shop) -> Shop:
        self.session.add(shop)
        await self.session.flush()
        return shop


class MembershipRepository:
    """Every query is scoped to one shop (the tenant)."""

    def __init__(self, session: AsyncSession, shop_id: uuid.UUID) -> None:
        self.session = session
        self.shop_id = shop_id

    async def get(self, user_id: uuid.UUID) -> Membership | None:
        return await self.session.get(Membership, (self.shop_id, user_id))

    async def role_of(self, user_id: uuid.UUID) -> Role | None:
        stmt = select(Membership.role).where(
            Membership.shop_id == self.shop_id, Membership.user_id == user_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def count_owners(self) -> int:
        """Count the owners, locking their rows until the transaction ends.

        Without the lock two owners demoting (or removing) each other at once both see two
        owners and both succeed, leaving the shop with none. ``FOR UPDATE`` (in a fixed order,
        so no deadlock) makes the second wait and then see one owner. SQLite ignores it; its
        write transactions are serialised already (``BEGIN IMMEDIATE``).
        """
        stmt = (
            select(Membership.user_id)
            .where(Membership.shop_id == self.shop_id, Membership.role == Role.owner)
            .order_by(Membership.user_id)
            .with_for_update()
        )
        return len((await self.session.execute(stmt)).all())

    async def add(self, membership: Membership) -> Membership:
        self.session.add(membership)
        await self.session.flush()
        return membership

    async def remove(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(Membership).where(
                Membership.shop_id == self.shop_id, Membership.user_id == user_id
            )
        )
