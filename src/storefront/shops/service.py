"""Shops (tenants) and who may act in them. Other domains ask here for a caller's role."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.deps import Principal
from storefront.identity.service import user_exists
from storefront.platform.audit import record
from storefront.platform.errors import Conflict, Forbidden, NotFound
from storefront.shops.models import Membership, Role, Shop
from storefront.shops.repository import MembershipRepository, ShopRepository

STAFF_ROLES = frozenset({Role.owner, Role.staff})


def _audit_member(
    session: AsyncSession,
    action: str,
    shop_id: uuid.UUID,
    user_id: uuid.UUID,
    before: Role | None,
    after: Role | None,
) -> None:
    record(
        session,
        action,
        object_type="user",
        object_id=user_id,
        shop_id=shop_id,
        details={
            "role_before": None if before is None else before.value,
            "role_after": None if after is None else after.value,
        },
    )


def shop_tag(shop_id: uuid.UUID) -> str:
    """Cache tag of a shop's public representation (and what depends on its existence)."""
    return f"shop:{shop_id}"


class ShopService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.shops = ShopRepository(session)

    async def create(self, principal: Principal, *, name: str, slug: str) -> Shop:
        if await self.shops.by_slug(slug) is not None:
            raise Conflict(f"The slug {slug!r} is taken.")
        shop = Shop(name=name, slug=slug)
        try:
            async with self.session.begin_nested():
                await self.shops.add(shop)
                await MembershipRepository(self.session, shop.id).add(
                    Membership(shop_id=shop.id, user_id=principal.user_id, role=Role.owner)
                )
        except IntegrityError as exc:
            raise Conflict(f"The slug {slug!r} is taken.") from exc
        record(self.session, "shop.created", object_type="shop", object_id=shop.id, shop_id=shop.id)
        _audit_member(self.session, "shop.member_set", shop.id, principal.user_id, None, Role.owner)
        return shop

    async def get(self, shop_id: uuid.UUID) -> Shop:
        shop = await self.shops.get(shop_id)
        if shop is None:
            raise NotFound("No such shop.")
        return shop

    async def role_of(self, shop_id: uuid.UUID, principal: Principal | None) -> Role | None:
        """The caller's role in a shop; platform admins act as owners everywhere."""
        if principal is None:
            return None
        if principal.is_admin:
            return Role.owner
        return await MembershipRepository(self.session, shop_id).role_of(principal.user_id)

    async def is_staff(self, shop_id: uuid.UUID, principal: Principal | None) -> bool:
        """True for owners and staff; raises NotFound for an unknown shop."""
        await self.get(shop_id)
        return await self.role_of(shop_id, principal) in STAFF_ROLES

    async def require_staff(self, shop_id: uuid.UUID, principal: Principal) -> None:
        if not await self.is_staff(shop_id, principal):
            raise Forbidden("Only this shop's staff may do that.")

    async def require_owner(self, shop_id: uuid.UUID, principal: Principal) -> None:
        await self.get(shop_id)
        if await self.role_of(shop_id, principal) is not Role.owner:
            raise Forbidden("Only this shop's owners may do that.")

    async def set_member(
        self,
        principal: Principal,
        shop_id: uuid.UUID,
        user_id: uuid.UUID,
        role: Role,
    ) -> Membership:
        await self.require_owner(shop_id, principal)
        if not await user_exists(self.session, user_id):
            raise NotFound("No such user.")
        members = MembershipRepository(self.session, shop_id)
        existing = await members.get(user_id)
        if existing is None:
            added = await members.add(Membership(shop_id=shop_id, user_id=user_id, role=role))
            _audit_member(self.session, "shop.member_set", shop_id, user_id, None, role)
            return added
        if existing.role is Role.owner and role is not Role.owner:
            await self._keep_an_owner(members)
        previous = existing.role
        existing.role = role
        await self.session.flush()
        _audit_member(self.session, "shop.member_set", shop_id, user_id, previous, role)
        return existing

    async def remove_member(
        self, principal: Principal, shop_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        await self.require_owner(shop_id, principal)
        members = MembershipRepository(self.session, shop_id)
        existing = await members.get(user_id)
        if existing is None:
            raise NotFound("This user is not a member of the shop.")
        if existing.role is Role.owner:
            await self._keep_an_owner(members)
        await members.remove(user_id)
        _audit_member(self.session, "shop.member_removed", shop_id, user_id, existing.role, None)

    @staticmethod
    async def _keep_an_owner(members: MembershipRepository) -> None:
        if await members.count_owners() <= 1:
            raise Conflict("A shop must keep at least one owner.")
