"""Shops (tenants) and who may act in them. Other domains ask here for a caller's role."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import record
from storefront.auth.principal import Principal
from storefront.identity.service import user_exists
from storefront.kit.errors import Conflict, Forbidden, NotFound
from storefront.shops.models import Membership, Role, Shop
from storefront.shops.repository import (
    MembershipRepository,
    ShopRepository,
    UserMembershipRepository,
)

STAFF_ROLES = frozenset({Role.owner, Role.staff})
# what one customer may hold unpaid in the shop (decision 0118; orders enforce them)
HOLD_LIMITS = frozenset(
    {"max_line_quantity", "max_order_units", "max_pending_units", "max_pending_stock_percent"}
)


def _audit_member(
    session: AsyncSession,
    action: str,
    shop_id: uuid.UUID,
    user_id: uuid.UUID,
    before: Role | None,
    after: Role | None,
    reason: str | None = None,
) -> None:
    details: dict[str, str | int | bool | None] = {
        "role_before": None if before is None else before.value,
        "role_after": None if after is None else after.value,
    }
    if reason is not None:
        details["reason"] = reason
    record(
        session,
        action,
        object_type="user",
        object_id=user_id,
        shop_id=shop_id,
        details=details,
    )


def shop_tag(shop_id: uuid.UUID) -> str:
    """Cache tag of a shop's public representation (and what depends on its existence)."""
    return f"shop:{shop_id}"


class ShopService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.shops = ShopRepository(session)

    async def create(
        self, principal: Principal, *, name: str, slug: str, max_owned: int | None = None
    ) -> Shop:
        """A new shop owned by the caller; at most ``max_owned`` shops per owner (platform
        admins: no cap), counted under a per-user lock so concurrent creations cannot all
        pass it (decision 0121)."""
        if max_owned is not None and not principal.is_admin:
            mine = UserMembershipRepository(self.session, principal.user_id)
            await mine.lock()
            if await mine.count_owned() >= max_owned:
                raise Conflict(
                    f"An account may own at most {max_owned} shops; hand one over to another "
                    "owner or ask the platform operator."
                )
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

    async def get_many(self, shop_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Shop]:
        """The existing shops among ``shop_ids``, by id (one statement; a shop's existence
        is public)."""
        return {shop.id: shop for shop in await self.shops.get_many(shop_ids)}

    async def memberships_page(
        self, principal: Principal, *, limit: int, after: uuid.UUID | None
    ) -> tuple[list[tuple[Shop, Role]], uuid.UUID | None]:
        """A page of the caller's own memberships (shop, role) in shop id order, and the shop id
        to continue after (None on the last page). Platform admins list only the shops they
        really belong to, not every shop they may act in."""
        rows = await UserMembershipRepository(self.session, principal.user_id).page(
            limit=limit + 1, after=after
        )
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1][0].id
        return rows, None

    async def change_hold_limits(
        self, shop_id: uuid.UUID, values: Mapping[str, int | None]
    ) -> Shop:
        """Set the hold limits named in ``values`` (None: the platform default); the ones
        that really change are recorded in the audit log. Raises NotFound for an unknown shop."""
        unknown = set(values) - HOLD_LIMITS
        if unknown:
            raise ValueError(f"not a hold limit: {sorted(unknown)}")
        shop = await self.get(shop_id)
        changed: dict[str, str | int | bool | None] = {}
        for name, value in values.items():
            if getattr(shop, name) != value:
                setattr(shop, name, value)
                changed[name] = value
        if changed:
            await self.session.flush()
            record(
                self.session,
                "shop.order_limits_changed",
                object_type="shop",
                object_id=shop_id,
                shop_id=shop_id,
                details=changed,
            )
        return shop

    async def lock(self, shop_id: uuid.UUID) -> None:
        """Serialise this transaction's changes to the shop with every other one that locks
        it (ShopRepository.lock); raises NotFound for an unknown shop."""
        if not await self.shops.lock(shop_id):
            raise NotFound("No such shop.")

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
        # locked before the caller's role is read: a concurrent change (the same member
        # added twice, the caller removed) is seen whole, never half (no 500, no stale role)
        await self.lock(shop_id)
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
        await self.lock(shop_id)
        await self.require_owner(shop_id, principal)
        members = MembershipRepository(self.session, shop_id)
        existing = await members.get(user_id)
        if existing is None:
            raise NotFound("This user is not a member of the shop.")
        if existing.role is Role.owner:
            await self._keep_an_owner(members)
        await members.remove(user_id)
        _audit_member(self.session, "shop.member_removed", shop_id, user_id, existing.role, None)

    async def end_memberships_of(self, user_id: uuid.UUID, *, reason: str) -> None:
        """Remove the user from every shop (their account is erased, decision 0124), each
        shop locked first like any membership change. A shop whose only owner this was
        keeps existing without one: a platform administrator names the next owner."""
        rows = await UserMembershipRepository(self.session, user_id).page(limit=None, after=None)
        for shop, role in rows:  # shop id order: the same lock order as everyone else
            await self.lock(shop.id)
            await MembershipRepository(self.session, shop.id).remove(user_id)
            _audit_member(self.session, "shop.member_removed", shop.id, user_id, role, None, reason)

    @staticmethod
    async def _keep_an_owner(members: MembershipRepository) -> None:
        if await members.count_owners() <= 1:
            raise Conflict("A shop must keep at least one owner.")
