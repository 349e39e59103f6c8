from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.db import lock_key
from storefront.shops.models import Membership, Role, Shop


class ShopRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, shop_id: uuid.UUID) -> Shop | None:
        return await self.session.get(Shop, shop_id)

    async def get_many(self, shop_ids: Sequence[uuid.UUID]) -> list[Shop]:
        """The shops among ``shop_ids`` that exist (one statement, any order)."""
        if not shop_ids:
            return []
        return list((await self.session.scalars(select(Shop).where(Shop.id.in_(shop_ids)))).all())

    async def lock(self, shop_id: uuid.UUID) -> bool:
        """Lock the shop's row until the transaction ends; False when there is no such shop.

        Changes that count something of the shop before they add to it (members, webhook
        endpoints) take this lock first, so concurrent requests run one after the other on
        PostgreSQL instead of each seeing the old count. SQLite ignores ``FOR UPDATE``; its
        write transactions are serialised already (``BEGIN IMMEDIATE``).
        """
        # FOR NO KEY UPDATE: serialises these changes with each other, but never waits for
        # (nor blocks) the foreign-key checks of orders and products inserted in the shop
        stmt = select(Shop.id).where(Shop.id == shop_id).with_for_update(key_share=True)
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def by_slug(self, slug: str) -> Shop | None:
        return (
            await self.session.execute(select(Shop).where(Shop.slug == slug))
        ).scalar_one_or_none()

    async def add(self, shop: Shop) -> Shop:
        self.session.add(shop)
        await self.session.flush()
        return shop


class UserMembershipRepository:
    """One user's memberships across shops (the user is the scope, not a shop)."""

    def __init__(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        self.session = session
        self.user_id = user_id

    async def lock(self) -> None:
        """Serialise this transaction with every other one that locks the same user's
        memberships (shop creation counting the shops they own). A transaction-scoped
        advisory lock on PostgreSQL: a user who owns nothing yet has no row to lock. SQLite
        serialises write transactions already (``BEGIN IMMEDIATE``)."""
        await lock_key(self.session, f"storefront.memberships.user:{self.user_id}")

    async def count_owned(self) -> int:
        stmt = select(func.count()).where(
            Membership.user_id == self.user_id, Membership.role == Role.owner
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def page(self, *, limit: int | None, after: uuid.UUID | None) -> list[tuple[Shop, Role]]:
        """Up to ``limit`` (None: all) (shop, role) pairs in shop id order, after ``after``."""
        stmt = (
            select(Shop, Membership.role)
            .join(Membership, Membership.shop_id == Shop.id)
            .where(Membership.user_id == self.user_id)
        )
        if after is not None:
            stmt = stmt.where(Membership.shop_id > after)
        rows = await self.session.execute(stmt.order_by(Membership.shop_id).limit(limit))
        return [(shop, role) for shop, role in rows]


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
